"""Section 2.4: a toy convnet against a linear model on three functions of x in R^4,
and the convnet's hand-written NumPy backprop checked against TensorFlow.

    python -m kerasdl.toy [--seeds 5 --iterations 3000 ...]

Writes runs/toy/{toy_curves.png, summary.json, table.md} and prints the summary as one
JSON line. Every Keras model trains through the shared `training.fit`.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasdl.atomic import write_text
from kerasdl.summary import config_json, write as write_summary
from kerasdl.errors import (add_defaulted, add_quiet, entry_point, non_negative_float, parse_config_args,
                            positive, print_summary, writable_dir)
from kerasdl import locks

log = logging.getLogger("kerasdl.toy")

MODELS = ("toy_linear", "toy_cnn")


@dataclass
class ToyConfig:
    """Section 2.4's experiment; 30 Keras runs of 2,000 SGD steps each."""

    functions: tuple[str, ...] = ("f0", "f1", "f2")
    seeds: int = 5
    iterations: int = 2000
    batch_size: int = 32
    lr: float = 0.01
    l2: float = 1e-4
    noise: float = 0.01
    n_train: int = 1000
    n_test: int = 200
    data_seed: int = 0
    run_dir: Path = field(default_factory=lambda: Path("runs/toy"))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def epochs(self) -> int:
        return max(1, round(self.iterations / self.steps_per_epoch))


def train_keras(model_name: str, toy, seed: int, cfg: ToyConfig, run_dir: Path) -> dict:
    """One Keras toy model on one function and seed, through the shared fit path."""
    from kerasdl import models, training

    make = lambda steps_per_epoch: models.compile_regressor(models.build(model_name, l2=cfg.l2), lr=cfg.lr)  # noqa: E731
    fit_cfg = training.FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=seed, restart=True,
                                 tensorboard=False, backup=False, verbose=0, title=f"{model_name} seed {seed}")
    result = training.fit(make, toy.split, run_dir, fit_cfg)
    curve = [r["test_mse"] for r in result.history]
    return {"test_mse": curve[-1], "curve": curve, "model": result.model}


def compare(cfg: ToyConfig) -> dict:
    """Linear vs convnet on every function and seed: final test MSE table and curves."""
    from kerasdl import data

    results = {}
    for fn in cfg.functions:
        toy = data.toy_dataset(fn, cfg.n_train, cfg.n_test, cfg.noise, seed=cfg.data_seed)
        results[fn] = {"noise_floor": toy.noise_floor, "target_variance": float(np.var(toy.split.y_test))}
        for model_name in MODELS:
            runs = []
            for seed in range(cfg.seeds):
                start = time.perf_counter()
                runs.append(train_keras(model_name, toy, seed, cfg, cfg.run_dir / fn / model_name / f"seed{seed}"))
                log.info("toy: %s on %s, seed %d of %d: test MSE %.4g after %d steps (%.1f s)", model_name, fn,
                         seed + 1, cfg.seeds, runs[-1]["test_mse"], cfg.epochs * cfg.steps_per_epoch,
                         time.perf_counter() - start)
            finals = np.array([r["test_mse"] for r in runs])
            results[fn][model_name] = {
                "median": float(np.median(finals)), "min": float(finals.min()), "max": float(finals.max()),
                "per_seed": finals.tolist(), "curves": [r["curve"] for r in runs],
            }
    return results


def gradient_check(cfg: ToyConfig, seed: int = 0) -> dict:
    """Hand-written gradients vs tf.GradientTape on the Keras toy convnet (same weights) and vs
    central finite differences."""
    import tensorflow as tf

    from kerasdl import backprop, data, models, training

    toy = data.toy_dataset("f1", 64, 1, cfg.noise, seed=cfg.data_seed)
    x, y = toy.split.x_train.astype("float64"), toy.split.y_train.astype("float64")
    training.seed_everything(seed)
    model = models.toy_cnn(l2=cfg.l2)
    K, u = (w.numpy().astype("float64") for w in model.weights)
    _, hand_K, hand_u = backprop.backward(x, y, K, u, cfg.l2)
    fd_K, fd_u = backprop.finite_difference(x, y, K, u, cfg.l2)
    with tf.GradientTape() as tape:
        pred = model(tf.constant(x, tf.float32))[:, 0]
        loss = tf.reduce_mean((pred - tf.constant(y, tf.float32)) ** 2) + tf.add_n(model.losses)
    tf_K, tf_u = (g.numpy() for g in tape.gradient(loss, [model.get_layer("filters").kernel, model.get_layer("u").kernel]))
    return {
        "max_rel_error_vs_tensorflow": max(backprop.relative_error(hand_K, tf_K), backprop.relative_error(hand_u, tf_u)),
        "max_rel_error_vs_finite_differences": max(backprop.relative_error(hand_K, fd_K),
                                                   backprop.relative_error(hand_u, fd_u)),
        "batch": len(x),
        "note": "TensorFlow runs in float32, the hand-written pass and finite differences in float64",
    }


def numpy_training(cfg: ToyConfig) -> dict:
    """Train the convnet on f1 with the hand-written backprop alone, from the same initial weights
    as the Keras runs (one per seed)."""
    from kerasdl import backprop, data, models, training

    toy = data.toy_dataset("f1", cfg.n_train, cfg.n_test, cfg.noise, seed=cfg.data_seed)
    x, y = toy.split.x_train.astype("float64"), toy.split.y_train.astype("float64")
    x_test, y_test = toy.split.x_test.astype("float64"), toy.split.y_test.astype("float64")
    finals = []
    for seed in range(cfg.seeds):
        training.seed_everything(seed)
        K, u = (w.numpy().astype("float64") for w in models.toy_cnn().weights)
        K, u = backprop.sgd(x, y, K, u, cfg.lr, cfg.l2, cfg.epochs * cfg.steps_per_epoch, cfg.batch_size, seed=seed)
        pred, _ = backprop.forward(x_test, K, u)
        finals.append(float(np.mean((pred - y_test) ** 2)))
    return {"function": "f1", "median": float(np.median(finals)), "min": min(finals), "max": max(finals),
            "per_seed": finals}


def markdown_table(results: dict, numpy_f1: dict | None) -> str:
    from kerasdl.data import TOY_DESCRIPTIONS

    lines = ["| function | noise floor | linear median (min-max) | convnet median (min-max) |",
             "|---|---|---|---|"]
    for fn, r in results.items():
        cells = [f"{r[m]['median']:.4g} ({r[m]['min']:.3g}-{r[m]['max']:.3g})" for m in MODELS]
        lines.append(f"| {fn} = {TOY_DESCRIPTIONS[fn]} | {r['noise_floor']:.3g} | {cells[0]} | {cells[1]} |")
    if numpy_f1:
        lines.append(f"\nHand-written NumPy SGD on f1 (same seeds): median test MSE {numpy_f1['median']:.4g} "
                     f"({numpy_f1['min']:.3g}-{numpy_f1['max']:.3g}).")
    return "\n".join(lines) + "\n"


@locks.one_run_at_a_time
def run(cfg: ToyConfig) -> dict:
    from kerasdl import plots

    run_dir = writable_dir(cfg.run_dir, "--run-dir")
    results = compare(cfg)
    grads = gradient_check(cfg)
    numpy_f1 = numpy_training(cfg) if "f1" in cfg.functions else None
    iterations = [(e + 1) * cfg.steps_per_epoch for e in range(cfg.epochs)]
    figure = run_dir / "toy_curves.png"
    plots.seed_bands(
        {fn: {m: r[m]["curves"] for m in MODELS} for fn, r in results.items()},
        {fn: r["noise_floor"] for fn, r in results.items()},
        iterations, figure,
        labels={"toy_linear": "linear", "toy_cnn": "convnet"},
    )
    table = run_dir / "table.md"
    write_text(table, markdown_table(results, numpy_f1))
    summary = {
        "section": "2.4",
        "config": config_json(cfg),
        "epochs": cfg.epochs,
        "iterations": cfg.epochs * cfg.steps_per_epoch,
        "results": {fn: {k: ({kk: vv for kk, vv in v.items() if kk != "curves"} if isinstance(v, dict) else v)
                         for k, v in r.items()} for fn, r in results.items()},
        "gradient_check": grads,
        "numpy_sgd_f1": numpy_f1,
        "figure": str(figure),
        "table": str(table),
    }
    return write_summary(run_dir, summary)


def parser() -> argparse.ArgumentParser:
    d = ToyConfig()
    p = argparse.ArgumentParser(prog="python -m kerasdl.toy",
                                description="Section 2.4: toy convnet vs linear model on f0 (linear), f1 = max(x) "
                                "and f2 = log-sum-exp(xW), over several seeds; hand-written backprop checked.")
    p.add_argument("--functions", nargs="+", choices=list(d.functions), default=list(d.functions),
                   help="target functions to run (default: all three)")
    return add_quiet(add_defaulted(p, d, [
        ("--seeds", positive(int), "initialisation seeds per model"),
        ("--iterations", positive(int), "SGD steps, rounded to whole epochs"),
        ("--batch-size", positive(int), "SGD batch"),
        ("--lr", positive(float), "SGD learning rate"),
        ("--l2", non_negative_float, "L2 penalty lambda on all weights"),
        ("--noise", non_negative_float, "multiplicative Gaussian noise on targets"),
        ("--n-train", positive(int), "training points"),
        ("--n-test", positive(int), "test points"),
        ("--run-dir", Path, "output directory"),
    ]))


def main(argv=None) -> int:
    values, quiet = parse_config_args(parser(), argv)
    cfg = ToyConfig(**{**values, "functions": tuple(dict.fromkeys(values["functions"]))})
    return print_summary(lambda: run(cfg), quiet)


cli = entry_point(main, "python -m kerasdl.toy", onednn=False)  # Eigen: faster on its tiny convnet (kerasdl.use_onednn)


if __name__ == "__main__":
    cli()
