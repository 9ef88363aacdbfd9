"""Section 2.5: the three MNIST classifiers.

    python -m kerasdl.mnist {linear,mlp,cnn} [flags]

Trains through the shared path (data -> models -> training.fit -> artifacts.export),
writes runs/<name>/history.{csv,png} and TensorBoard logs, exports saved_models/<name>/
(SavedModel) and saved_models/<name>.keras, and prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from kerasdl import AUTO_PRECISION_HELP, PRECISION_METAVAR, precision_arg
from kerasdl.summary import config_json, write as write_summary
from kerasdl.errors import (UsageError, creatable, entry_point, non_negative_float, positive, print_summary,
                            writable_dir)


@dataclass
class MnistConfig:
    """One classifier experiment; the defaults are the write-up's models."""

    model: str = "cnn"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    schedule: str = "constant"
    optimizer: str = "adam"
    momentum: float = 0.0
    activation: str = "relu"
    hidden_layers: int = 1
    units: int = 512
    limit: int | None = None
    validation_size: float | None = None  # 5000, or 10% of a --limit slice
    seed: int = 0
    run_dir: Path | None = None
    export_dir: Path = Path("saved_models")
    name: str | None = None
    restart: bool = False
    distribute: str = "none"
    jit_compile: bool = False
    precision: str = "float32"  # Keras dtype policy: float32 (the write-up's numbers), mixed_bfloat16, mixed_float16

    @property
    def run_name(self) -> str:
        return self.name or self.model


LAYOUT = {"linear": "flat", "mlp": "flat", "cnn": "image"}  # how each classifier takes its images
DESCRIPTIONS = {
    "linear": "Softmax regression on MNIST's 784 pixels (section 2.5.1).",
    "mlp": "A dense ReLU network on MNIST's 784 pixels (section 2.5.2).",
    "cnn": "A convnet with max-pooling and dropout on 28x28 MNIST images (section 2.5.3).",
}

# Per-model defaults, measured on the full data (README, "Results").
DEFAULTS = {
    "linear": dict(epochs=10, batch_size=128, lr=1e-3),
    "mlp": dict(epochs=20, batch_size=128, lr=1e-3),
    "cnn": dict(epochs=9, batch_size=128, lr=2e-3, schedule="cosine"),
}


def config_for(model: str, **overrides) -> MnistConfig:
    """The default configuration of `model`, with `overrides` (None values ignored) applied."""
    cfg = replace(MnistConfig(model=model), **DEFAULTS[model])
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def make_model_fn(cfg: MnistConfig):
    """The builder of the compiled classifier that training.fit calls inside its strategy's scope,
    with the optimizer steps per epoch at the global batch (the cosine decay spans the whole run)."""
    from kerasdl import models

    hp = dict(hidden_layers=cfg.hidden_layers, units=cfg.units, activation=cfg.activation) if cfg.model == "mlp" else {}

    def make(steps_per_epoch: int):
        lr = models.learning_rate(cfg.lr, cfg.schedule, decay_steps=cfg.epochs * steps_per_epoch)
        return models.compile_classifier(models.build(cfg.model, **hp), cfg.optimizer, lr, cfg.momentum,
                                         jit_compile=cfg.jit_compile)

    return make


def train(cfg: MnistConfig, verbose="auto") -> dict:
    """Run one classifier experiment end to end; return the JSON summary."""
    run_dir, chief = worker_role(cfg)
    split = load_data(cfg)  # bad data fails here, before TensorFlow is imported or any directory created
    run_dir, export_dir = output_dirs(cfg, run_dir)
    with hold_locks(cfg, run_dir, export_dir, chief):
        from kerasdl import faults, resume
        from kerasdl.training import weights_digest

        result = fit(cfg, split, run_dir, verbose)
        faults.point("after_fit")
        digest = weights_digest(result.model)
        scores = evaluate(result.model, split)
        card = model_card(cfg, split, result, scores)
        exported = export(cfg, result, card, digest, export_dir) if chief else None
        faults.point("before_summary")
        summary = write_summary(run_dir, make_summary(cfg, split, result, scores, digest, exported))
        resume.discard_backup(run_dir)  # the results are on disk: a rerun is a new run
        return summary


def worker_role(cfg: MnistConfig) -> tuple[Path, bool]:
    """(run directory, whether this process exports): other workers of a multi-worker cluster keep
    their own history and backup in a subdirectory, and only the chief exports."""
    run_dir = cfg.run_dir or Path("runs") / cfg.run_name
    if cfg.distribute != "multiworker":
        return run_dir, True
    if not os.environ.get("TF_CONFIG"):
        raise UsageError("--distribute multiworker needs TF_CONFIG describing the cluster and this task "
                         "(docs/distribution.md)")
    from kerasdl.devices import worker_task

    kind, index, chief = worker_task()
    return (run_dir if chief else run_dir / f"{kind}{index}"), chief


def load_data(cfg: MnistConfig):
    """The train/validation/test split in the layout the classifier takes."""
    from kerasdl import data

    return data.mnist_split(LAYOUT[cfg.model], limit=cfg.limit, validation_size=cfg.validation_size)


def output_dirs(cfg: MnistConfig, run_dir: Path) -> tuple[Path, Path]:
    """The run and export directories, both checked before either is created."""
    creatable(run_dir, "--run-dir")
    creatable(cfg.export_dir, "--export-dir")
    return writable_dir(run_dir, "--run-dir"), writable_dir(cfg.export_dir, "--export-dir")


def hold_locks(cfg: MnistConfig, run_dir: Path, export_dir: Path, chief: bool) -> contextlib.ExitStack:
    """One run per run directory and per exported name: a second run of the same name stops here."""
    from kerasdl import locks

    held = contextlib.ExitStack()
    with held:
        held.enter_context(locks.run_dir_lock(run_dir))
        if chief:
            from kerasdl.artifacts import name_lock

            held.enter_context(name_lock(export_dir, cfg.run_name))
        return held.pop_all()


def fit(cfg: MnistConfig, split, run_dir: Path, verbose):
    """Train through the shared path; the backup is kept until the summary is on disk."""
    from kerasdl import training

    fit_cfg = training.FitConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, restart=cfg.restart, keep_backup=True,
        distribute=cfg.distribute, precision=cfg.precision, verbose=verbose, title=f"{cfg.run_name} on MNIST",
    )
    return training.fit(make_model_fn(cfg), split, run_dir, fit_cfg)


def evaluate(model, split) -> dict:
    """Test loss and accuracy, rounded as the summary and the model card give them."""
    test_loss, test_accuracy = model.evaluate(split.x_test, split.y_test, batch_size=1000, verbose=0)
    return {"test_accuracy": round(float(test_accuracy), 5), "test_loss": round(float(test_loss), 5)}


def model_card(cfg: MnistConfig, split, result, scores: dict) -> dict:
    """What the exported model is, what it was trained on and how, and how it scored."""
    from kerasdl import cards, data

    return {
        "description": DESCRIPTIONS[cfg.model],
        "data": {"dataset": "MNIST", "source": str(data.mnist_source() or "keras download"),
                 "train_images": int(len(split.x_train)), "validation_images": int(len(split.x_val)),
                 "test_images": int(len(split.x_test)),
                 "split": "validation carved from the end of the training images, used for model selection; "
                          "the test images are only evaluated"},
        "training": config_json(cfg),
        "results": {**scores, "precision": cfg.precision, "epochs": cfg.epochs,
                    "train_seconds": round(result.train_seconds, 2), "replicas": result.replicas,
                    "params": int(result.model.count_params())},
        "how_the_recipe_was_chosen": cards.RECIPES.get(cfg.model, "custom flags: " + json.dumps(config_json(cfg))),
        "serving": "inputs float32 in [0, 1], shape " + ("(N, 784)" if LAYOUT[cfg.model] == "flat" else "(N, 28, 28, 1)")
                   + "; outputs (N, 10) class probabilities",
    }


def export(cfg: MnistConfig, result, card: dict, digest: str, export_dir: Path):
    """Publish the trained model as a new version of saved_models/<name>/ and <name>.keras.

    Resumed after its last epoch (a crash after training): the version exported before the crash,
    if any, holds these very weights and is reused instead of published twice."""
    from kerasdl import artifacts

    trained_nothing = result.resumed_from_epoch >= cfg.epochs
    return artifacts.export(result.model, export_dir, cfg.run_name, card=card, digest=digest, reuse=trained_nothing)


def make_summary(cfg: MnistConfig, split, result, scores: dict, digest: str, exported) -> dict:
    """The run's JSON summary: what the report reads and the command prints."""
    return {
        "model": cfg.model,
        "name": cfg.run_name,
        "epochs": cfg.epochs,
        **scores,
        "precision": cfg.precision,
        "train_seconds": round(result.train_seconds, 2),
        "seconds_per_epoch": round(result.train_seconds / max(1, len(result.history) - result.resumed_from_epoch), 3),
        "train_images": int(len(split.x_train)),
        "params": int(result.model.count_params()),
        "resumed_from_epoch": result.resumed_from_epoch,
        "saved_model": str(exported.saved_model) if exported else None,
        "keras_model": str(exported.keras_model) if exported else None,
        "weights_sha256": digest,
        "replicas": result.replicas,
        "history_csv": str(result.history_csv),
        "history_plot": str(result.history_plot),
        "config": config_json(cfg),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kerasdl.mnist",
        description="Train an MNIST classifier (section 2.5), export it as a SavedModel, "
        "and print a JSON summary as the last stdout line.",
        epilog="Defaults per model: " + "; ".join(f"{m}: {', '.join(f'{k}={v}' for k, v in d.items())}"
                                                 for m, d in DEFAULTS.items())
        + ". Data: $KERASDL_MNIST, else ~/.keras/datasets/mnist.npz, else a download.",
    )
    p.add_argument("model", choices=list(DEFAULTS), help="linear: softmax regression; mlp: dense ReLU "
                   "network (one hidden layer by default); cnn: convnet with max-pooling and dropout")
    p.add_argument("--epochs", type=positive(int), help="passes over the training set (default: per model)")
    p.add_argument("--batch-size", type=positive(int), help="images per gradient step (default: 128)")
    p.add_argument("--lr", type=positive(float), help="(peak) learning rate (default: per model)")
    p.add_argument("--schedule", choices=["constant", "cosine"],
                   help="learning-rate schedule: constant, or cosine decay over the run (default: cosine for cnn)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], help="adam (default) or sgd")
    p.add_argument("--momentum", type=non_negative_float, help="SGD momentum, e.g. 0.9 (default: 0)")
    p.add_argument("--activation", choices=["relu", "sigmoid"], help="mlp hidden activation (default: relu)")
    p.add_argument("--hidden-layers", type=positive(int), help="mlp depth (default: 1, the minimal depth)")
    p.add_argument("--units", type=positive(int), help="mlp width per hidden layer (default: 512)")
    p.add_argument("--limit", type=positive(int),
                   help="use only the first N training and N test images (quick runs; default: all)")
    p.add_argument("--validation-size", type=positive(float),
                   help="validation images carved from the training set: a count, or a fraction < 1 (default: 5000, or 10%% with --limit below 50000)")
    p.add_argument("--seed", type=int, help="random seed for weights, shuffling and dropout (default: 0)")
    p.add_argument("--run-dir", type=Path, help="where history.csv/png, TensorBoard logs and the resume "
                   "backup go (default: runs/<name>)")
    p.add_argument("--export-dir", type=Path, help="where <name>/ (SavedModel) and <name>.keras go "
                   "(default: saved_models)")
    p.add_argument("--name", help="name of the run and its exported model (default: the model name)")
    p.add_argument("--restart", action="store_true", default=None,
                   help="discard the backup of an interrupted run and start from epoch 1")
    p.add_argument("--distribute", choices=["none", "mirrored", "multiworker"],
                   help="tf.distribute strategy: none, mirrored (GPUs of one machine), multiworker (TF_CONFIG)")
    p.add_argument("--jit-compile", action="store_true", default=None, help="compile the train step with XLA")
    p.add_argument("--precision", type=precision_arg, metavar=PRECISION_METAVAR,
                   help="Keras dtype policy: float32 (default, the write-up's numbers); mixed_bfloat16 (CPUs with "
                   "AVX-512 BF16/AMX, TPUs, recent GPUs); mixed_float16 (GPUs, with loss scaling). The output layer "
                   "and the exported model stay float32; " + AUTO_PRECISION_HELP)
    p.add_argument("--quiet", action="store_true",
                   help="no progress (Keras' per-epoch bar goes to stderr otherwise; stdout keeps the JSON line)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("model", "quiet")}
    cfg = config_for(args.model, **overrides)
    if cfg.name is not None and (not cfg.name or "/" in cfg.name or cfg.name.startswith(".")):
        raise UsageError(f"--name {cfg.name!r}: use a plain name without '/' or a leading '.'")
    return print_summary(lambda: train(cfg, verbose=0 if args.quiet else "auto"), args.quiet)


cli = entry_point(main, "python -m kerasdl.mnist")


if __name__ == "__main__":
    cli()
