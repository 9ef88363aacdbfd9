"""Section 2.5.4: the MLP's learning rate and depth, explored with Keras Tuner.

The hypermodel builds with `kerasdl.models` and trains with `kerasdl.training.fit`, so a trial
is the same experiment `python -m kerasdl.mnist mlp` runs, with its per-epoch train,
validation and test curves in runs/tuning/<search>/trials/<hyperparameters>/history.csv.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import keras_tuner as kt

from kerasdl import artifacts, data, devices, models, training
from kerasdl.atomic import write_text
from kerasdl.errors import clock
from kerasdl.summary import config_json, write as write_summary

log = logging.getLogger("tuning")

DEFAULT_EPOCHS = {"lr": 50, "depth": 20}  # epochs per trial of each search, the write-up's


@dataclass
class SearchConfig:
    """One search; `kind` picks which hyperparameter is gridded (learning rate or depth)."""

    kind: str = "lr"
    lrs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    depths: tuple[int, ...] = (1, 2, 3, 4)
    lr: float = 1e-3  # fixed rate of the depth search
    hidden_layers: int = 1  # fixed depth of the lr search
    units: int = 512
    activation: str = "relu"
    optimizer: str = "adam"
    momentum: float = 0.0
    epochs: int = DEFAULT_EPOCHS["lr"]  # of the default kind; config_for gives each kind its own
    batch_size: int = 128
    limit: int | None = None
    validation_size: float | None = None
    seed: int = 0
    precision: str = "float32"  # Keras dtype policy of every trial (devices.precision_policy)
    prune: bool = True  # stop a trial whose validation accuracy stays at chance (StopAtChance)
    overwrite: bool = False
    run_root: Path = field(default_factory=lambda: Path("runs/tuning"))
    export_dir: Path = field(default_factory=lambda: Path("saved_models"))

    @property
    def directory(self) -> Path:
        return self.run_root / self.kind

    @property
    def hp_name(self) -> str:
        return "lr" if self.kind == "lr" else "hidden_layers"


def config_for(kind: str, **overrides) -> SearchConfig:
    """The default search of `kind` (its epochs from DEFAULT_EPOCHS), with `overrides` (None values ignored)."""
    return SearchConfig(kind=kind, **{"epochs": DEFAULT_EPOCHS[kind],
                                      **{k: v for k, v in overrides.items() if v is not None}})


def trial_name(hp: kt.HyperParameters) -> str:
    """A directory name that says which hyperparameters a trial ran with, e.g. 'lr=0.001'."""
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hp.values.items()))


class StopAtChance(keras.callbacks.Callback):
    """Stop a trial whose validation accuracy stayed at chance level through its first `epochs` epochs.

    Rates like 1 and 10 sit at chance (0.1 on MNIST) from the first epoch; 50 epochs of them
    teach nothing. The rule looks only at the first `epochs` epochs and only once: a trial that
    learned (above `threshold` at any of them) and later collapses runs to the end, since when
    that happens is exactly the write-up's question.
    """

    def __init__(self, epochs: int = 5, threshold: float = 0.2):
        super().__init__()
        self.epochs, self.threshold = epochs, threshold
        self.best, self.stopped = 0.0, False

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is not None and math.isfinite(accuracy):
            self.best = max(self.best, accuracy)
        if epoch + 1 == self.epochs and self.best <= self.threshold:
            self.stopped = True
            self.model.stop_training = True


class MLPHyperModel(kt.HyperModel):
    """`build(hp)` reads like `models.mlp`; `fit` is the shared `training.fit` plus the tuner's callbacks."""

    def __init__(self, cfg: SearchConfig, test: tuple):
        super().__init__(name=f"mlp_{cfg.kind}")
        self.cfg, self.test = cfg, test  # the test set is only recorded per epoch, never tuned on
        self.started, self.trials_done, self.best = time.perf_counter(), 0, None

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        cfg = self.cfg
        if cfg.kind == "lr":
            lr, depth = hp.Choice("lr", list(cfg.lrs)), cfg.hidden_layers
        else:
            lr, depth = cfg.lr, hp.Choice("hidden_layers", list(cfg.depths))
        # Keras Tuner builds before it fits: seed here so a trial's initial weights depend on
        # its seed alone, not on which trials this process ran before it.
        training.seed_everything(cfg.seed)
        with devices.precision_policy(cfg.precision):  # Keras Tuner builds here, before fit
            model = models.mlp(hidden_layers=depth, units=cfg.units, activation=cfg.activation)
            return models.compile_classifier(model, cfg.optimizer, lr, cfg.momentum)

    def fit(self, hp, model, x, y, validation_data, epochs, batch_size, callbacks=None, verbose=0, **kwargs):
        """`tuner.search(x, y, validation_data=..., epochs=..., batch_size=...)` lands here; any other
        keyword of `search` goes on to `model.fit`, as Keras Tuner's own HyperModel.fit does."""
        run_dir = self.cfg.directory / "trials" / trial_name(hp)
        split = data.Split(x, y, *validation_data, *self.test)
        fit_cfg = training.FitConfig(epochs=epochs, batch_size=batch_size, seed=self.cfg.seed,
                                     terminate_on_nan=True, tensorboard=False, verbose=2 if verbose else 0,
                                     precision=self.cfg.precision, title=f"MLP, {trial_name(hp)}")
        chance = StopAtChance() if self.cfg.prune else None
        callbacks = [*(callbacks or []), *([chance] if chance else [])]
        # Keras Tuner built (and compiled, at a constant rate) the model already: fit takes it as it is.
        result = training.fit(lambda steps_per_epoch: model, split, run_dir, fit_cfg, callbacks=callbacks,
                              fit_kwargs=kwargs)
        epochs_run = len(result.history)
        record = {
            "hyperparameters": dict(hp.values),
            "tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "tuner0"),
            "diverged": result.diverged,
            "stopped_at_chance": bool(chance and chance.stopped),
            "epochs_run": epochs_run,
            "train_seconds": round(result.train_seconds, 2),
            "seconds_per_epoch": round(result.train_seconds / max(epochs_run - result.resumed_from_epoch, 1), 3),
            "params": int(model.count_params()),
            "history_csv": str(result.history_csv),
            "history_plot": str(result.history_plot),
        }
        write_text(run_dir / "trial.json", json.dumps(record, indent=2))
        self._report_trial(hp, result.history)
        return result.keras_history

    def _report_trial(self, hp, history: list[dict]) -> None:
        """One line per finished trial: n of N, its hyperparameters and score, the best so far, time left."""
        self.trials_done += 1
        total = len(self.cfg.lrs if self.cfg.kind == "lr" else self.cfg.depths)
        score = max((r.get("val_accuracy", 0.0) for r in history), default=0.0)
        if self.best is None or score > self.best[1]:
            self.best = (trial_name(hp), score)
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.trials_done * max(total - self.trials_done, 0)
        log.info("tuning %s: trial %d of %d (%s) best val_accuracy %.4f; best so far %s %.4f; "
                 "elapsed %s, about %s left", self.cfg.kind, self.trials_done, total, trial_name(hp), score,
                 *self.best, clock(elapsed), clock(left))


def make_tuner(cfg: SearchConfig, hypermodel: MLPHyperModel) -> kt.GridSearch:
    return kt.GridSearch(hypermodel, objective="val_accuracy", directory=str(cfg.run_root),
                         project_name=f"{cfg.kind}_tuner", overwrite=cfg.overwrite, seed=cfg.seed)


def _finite(x: float) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def trial_rows(cfg: SearchConfig, tuner: kt.GridSearch) -> list[dict]:
    """Every finished trial: hyperparameters, final and best metrics, diverged flag, seconds; best first."""
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.status != "COMPLETED":
            continue
        run_dir = cfg.directory / "trials" / trial_name(trial.hyperparameters)
        record = json.loads((run_dir / "trial.json").read_text())
        history = training.read_history(run_dir / "history.csv")
        last = history[-1]
        finite_loss = [r["loss"] for r in history if math.isfinite(r["loss"])]
        rows.append({
            "trial_id": trial.trial_id,
            **record,
            "objective_val_accuracy": trial.score,
            "final": {k: _finite(last.get(k)) for k in ("loss", "accuracy", "val_loss", "val_accuracy",
                                                          "test_loss", "test_accuracy")},
            "best": {"val_accuracy": max(r["val_accuracy"] for r in history),
                     "test_accuracy": max(r["test_accuracy"] for r in history),
                     "loss": min(finite_loss) if finite_loss else None},
            "at_chance": last["val_accuracy"] < 0.2,
            "val_accuracy_per_epoch": [r["val_accuracy"] for r in history],
        })
    return sorted(rows, key=lambda r: -(r["objective_val_accuracy"] or 0.0))


def markdown_table(key: str, rows: list[dict]) -> str:
    """The ranked results table (the report renders it from the summary's trials too)."""
    head = (f"| rank | {key} | best val acc | final test acc | final train loss | epochs run | diverged | "
            "stopped at chance | params | s/epoch |\n|---|---|---|---|---|---|---|---|---|---|\n")
    fmt = lambda v, spec: "nan" if v is None else format(v, spec)  # noqa: E731
    body = "".join(
        f"| {i + 1} | {r['hyperparameters'][key]:g} | {r['best']['val_accuracy']:.4f} | "
        f"{fmt(r['final']['test_accuracy'], '.4f')} | {fmt(r['final']['loss'], '.4g')} | {r['epochs_run']} | "
        f"{'yes' if r['diverged'] else 'no'} | {'yes' if r.get('stopped_at_chance') else 'no'} | {r['params']} | "
        f"{r['seconds_per_epoch']:.2f} |\n"
        for i, r in enumerate(rows))
    return head + body


def write_tables(cfg: SearchConfig, rows: list[dict]) -> tuple[Path, Path]:
    md, csv_path = cfg.directory / "results.md", cfg.directory / "results.csv"
    write_text(md, markdown_table(cfg.hp_name, rows))
    flat = [{cfg.hp_name: r["hyperparameters"][cfg.hp_name], "objective_val_accuracy": r["objective_val_accuracy"],
             **{f"final_{k}": v for k, v in r["final"].items()}, "best_test_accuracy": r["best"]["test_accuracy"],
             "diverged": r["diverged"], "stopped_at_chance": r.get("stopped_at_chance", False),
             "epochs_run": r["epochs_run"], "params": r["params"],
             "seconds_per_epoch": r["seconds_per_epoch"], "train_seconds": r["train_seconds"]} for r in rows]
    training.write_history(flat, csv_path) if flat else write_text(csv_path, "")
    return md, csv_path


def draw(cfg: SearchConfig, rows: list[dict]) -> dict[str, Path]:
    from tuning import figures

    curves = {f"{cfg.hp_name}={r['hyperparameters'][cfg.hp_name]:g}"
              + (" (stopped at chance)" if r.get("stopped_at_chance") else ""): training.read_history(Path(r["history_csv"]))
              for r in sorted(rows, key=lambda r: r["hyperparameters"][cfg.hp_name])}
    out = {"curves": cfg.directory / "curves.png"}
    figures.curves_by_trial(curves, out["curves"], title=f"MLP {cfg.hp_name} search ({cfg.optimizer})")
    if cfg.kind == "depth":
        out["depth"] = cfg.directory / "depth_tradeoff.png"
        figures.depth_tradeoff(rows, out["depth"])
    return out


def search(cfg: SearchConfig, verbose: int = 0) -> dict:
    """Run (or resume) the grid search, then tabulate, draw and export the best model.

    `verbose=1`: Keras Tuner's own trial lines, one line per epoch, and our line per trial
    (n of N, best so far, elapsed and time left); 0: silent.
    """
    split = data.mnist_split("flat", limit=cfg.limit, validation_size=cfg.validation_size)  # bad data: before any mkdir
    cfg.directory.mkdir(parents=True, exist_ok=True)
    if kt_role() == "worker":  # workers share the search their chief holds
        return _search(cfg, split, verbose)
    from kerasdl import locks

    # One chief per search directory: two chiefs would hand out the same trials and overwrite each other.
    with locks.hold(cfg.directory / ".lock", f"search directory {cfg.directory}",
                    "pass another --run-root to search beside it, or wait for it to finish"):
        return _search(cfg, split, verbose)


def _search(cfg: SearchConfig, split, verbose: int) -> dict:
    hypermodel = MLPHyperModel(cfg, test=(split.x_test, split.y_test))
    tuner = make_tuner(cfg, hypermodel)
    board = keras.callbacks.TensorBoard(str(cfg.directory / "tensorboard"), write_graph=False)
    start = time.perf_counter()
    tuner.search(split.x_train, split.y_train, validation_data=(split.x_val, split.y_val),
                 epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=[board], verbose=verbose)
    seconds = time.perf_counter() - start
    if kt_role() == "worker":
        return {"role": "worker", "tuner_id": tuner.tuner_id, "seconds": round(seconds, 1)}
    rows = trial_rows(cfg, tuner)
    md, csv_path = write_tables(cfg, rows)
    figs = draw(cfg, rows)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    with warnings.catch_warnings():
        # The best checkpoint is reloaded for evaluation and export only; its optimizer state is not needed.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        best_model = tuner.get_best_models(1)[0]
    best_eval = best_model.evaluate(split.x_test, split.y_test, batch_size=1000, verbose=0, return_dict=True)
    card = {
        "description": f"The MLP whose {cfg.hp_name} won the Keras Tuner grid search (section 2.5.4).",
        "data": {"dataset": "MNIST", "train_images": int(len(split.x_train)), "validation_images": int(len(split.x_val)),
                 "test_images": int(len(split.x_test)),
                 "split": "trials ranked by validation accuracy; the test set only recorded"},
        "training": {**config_json(cfg), "best_hyperparameters": dict(best_hp.values)},
        "results": {"test_accuracy": round(float(best_eval["accuracy"]), 5),
                    "test_loss": round(float(best_eval["loss"]), 5), "search_seconds": round(seconds, 1)},
        "how_the_recipe_was_chosen": f"Best validation accuracy over the grid {cfg.hp_name} in "
                                     f"{list(cfg.lrs if cfg.kind == 'lr' else cfg.depths)}.",
    }
    exported = artifacts.export(best_model, cfg.export_dir, f"mlp_best_{cfg.kind}", card=card)
    summary = {
        "search": cfg.kind,
        "trials": rows,
        "best_hyperparameters": dict(best_hp.values),
        "best_model_test_accuracy": round(float(best_eval["accuracy"]), 5),
        "seconds": round(seconds, 1),
        "table_md": str(md), "table_csv": str(csv_path),
        "figures": {k: str(v) for k, v in figs.items()},
        "saved_model": str(exported.saved_model),
        "config": config_json(cfg),
    }
    return write_summary(cfg.directory, summary)


def kt_role() -> str:
    """'chief', 'worker' or 'single', from Keras Tuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"

