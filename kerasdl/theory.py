"""Section 1: backprop facts, measured rather than asserted.

    python -m kerasdl.theory [--steps 300]

1. The sigmoid's derivative is s(x)(1 - s(x)): checked against tf.GradientTape on a dense grid.
2. Zero initialisation: in the toy convnet and in a small ReLU MLP on MNIST, every weight at 0
   gives zero gradients to every weight behind a ReLU (the ReLUs output 0), so those never
   move, while an output bias, which sees no ReLU, still learns; Glorot and He initialisation
   train. Measured per weight tensor, at step 0 and after training.

Writes runs/theory/{sigmoid.png, init_loss.png, summary.json}; prints the summary as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasdl.summary import config_json, write as write_summary
from kerasdl.errors import positive, progress, run_cli, writable_dir
from kerasdl import locks

log = logging.getLogger("kerasdl.theory")

INITIALISERS = ("zeros", "glorot_uniform", "he_normal")


@dataclass
class TheoryConfig:
    """Section 1's measurements; the defaults took 87 s on 2 cores (README)."""

    steps: int = 300  # full-batch gradient steps per initialisation
    toy_lr: float = 0.01
    mlp_lr: float = 0.1
    mlp_images: int = 2000
    mlp_units: int = 64
    seed: int = 0
    run_dir: Path = field(default_factory=lambda: Path("runs/theory"))


def sigmoid_derivative_check(lo: float = -20.0, hi: float = 20.0, points: int = 40001) -> dict:
    """Max |d sigmoid/dx (autodiff) - s(x)(1 - s(x))| over a grid, in float64 and float32."""
    import tensorflow as tf

    errors, curves = {}, {}
    for dtype in (tf.float64, tf.float32):
        x = tf.linspace(tf.constant(lo, dtype), tf.constant(hi, dtype), points)
        with tf.GradientTape() as tape:
            tape.watch(x)
            s = tf.sigmoid(x)
        autodiff = tape.gradient(s, x)
        identity = s * (1 - s)  # the forward value, reused
        errors[dtype.name] = float(tf.reduce_max(tf.abs(autodiff - identity)))
        curves = {"x": x.numpy(), "s": s.numpy(), "autodiff": autodiff.numpy(), "identity": identity.numpy()}
    h = 1e-5  # an independent check of the identity: central differences in float64
    xs = np.linspace(lo, hi, points)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    fd_error = float(np.max(np.abs((sig(xs + h) - sig(xs - h)) / (2 * h) - sig(xs) * (1 - sig(xs)))))
    return {"grid": [lo, hi, points], "max_abs_error": errors, "max_abs_error_vs_finite_differences": fd_error,
            "max_derivative": float(curves["autodiff"].max()),
            "curves": curves}


def _snapshot(model) -> dict[str, np.ndarray]:
    return {v.path: np.array(v.numpy()) for v in model.trainable_variables}


def zero_init_run(kind: str, init: str, split, loss_fn, make, cfg: TheoryConfig, run_dir: Path) -> dict:
    """Gradient of every weight tensor at step 0, then full-batch training through training.fit,
    then how far each tensor moved."""
    import tensorflow as tf

    from kerasdl import training

    training.seed_everything(cfg.seed)
    probe = make(init)
    with tf.GradientTape() as tape:
        loss = loss_fn(split.y_train, probe(split.x_train, training=True)) + sum(probe.losses)
    grads = tape.gradient(loss, probe.trainable_variables)
    step0 = {v.path: float(np.max(np.abs(g.numpy()))) for v, g in zip(probe.trainable_variables, grads)}

    before = _snapshot(probe)  # fit reseeds and rebuilds: its model starts from these same weights
    fit_cfg = training.FitConfig(epochs=cfg.steps, batch_size=len(split.x_train), seed=cfg.seed, restart=True,
                                 test_curve=False, tensorboard=False, backup=False, verbose=0,
                                 title=f"{kind}, {init} initialisation")
    result = training.fit(lambda steps_per_epoch: make(init), split, run_dir / f"{kind}_{init}", fit_cfg)
    after = _snapshot(result.model)
    tensors = {
        name: {
            "grad_max_abs_step0": step0[name],
            "max_abs_after": float(np.max(np.abs(after[name]))),
            "max_change": float(np.max(np.abs(after[name] - before[name]))),
        }
        for name in after
    }
    curve = [r["loss"] for r in result.history]
    return {"initial_loss": float(loss), "final_loss": curve[-1], "curve": curve, "tensors": tensors,
            "frozen": [n for n, t in tensors.items() if t["max_change"] == 0.0],
            "moved": [n for n, t in tensors.items() if t["max_change"] > 0.0]}


def zero_init_experiments(cfg: TheoryConfig) -> dict:
    """Zero vs Glorot vs He initialisation in the toy convnet (on max(x)) and a one-hidden-layer ReLU MLP on MNIST."""
    import keras

    from kerasdl import data, models

    toy = data.toy_dataset("f1").split
    mnist = data.mnist_split("flat", limit=cfg.mlp_images)
    setups = {
        "toy_cnn": (toy, keras.losses.MeanSquaredError(),
                    lambda init: models.compile_regressor(models.toy_cnn(l2=1e-4, kernel_initializer=init),
                                                          lr=cfg.toy_lr)),
        "mlp": (mnist, keras.losses.SparseCategoricalCrossentropy(),
                lambda init: models.compile_classifier(
                    models.mlp(units=cfg.mlp_units, kernel_initializer=init), "sgd", cfg.mlp_lr)),
    }
    out = {}
    for kind, (split, loss_fn, make) in setups.items():
        out[kind] = {}
        for init in INITIALISERS:
            out[kind][init] = zero_init_run(kind, init, split, loss_fn, make, cfg, cfg.run_dir)
            log.info("theory: %s, %s initialisation: loss %.4f -> %.4f in %d full-batch steps; %d of %d weight "
                     "tensors never moved", kind, init, out[kind][init]["initial_loss"], out[kind][init]["final_loss"],
                     cfg.steps, len(out[kind][init]["frozen"]), len(out[kind][init]["tensors"]))
    return out


@locks.one_run_at_a_time
def run(cfg: TheoryConfig) -> dict:
    from kerasdl import plots

    run_dir = writable_dir(cfg.run_dir, "--run-dir")
    sig = sigmoid_derivative_check()
    c = sig.pop("curves")
    sigmoid_png, loss_png = run_dir / "sigmoid.png", run_dir / "init_loss.png"
    plots.functions(c["x"], {"s(x)": c["s"], "s'(x) by autodiff": c["autodiff"],
                             "s(x)(1 - s(x)) (identity)": c["identity"]},
                    sigmoid_png, title="sigmoid and its derivative")
    inits = zero_init_experiments(cfg)
    titles = {"toy_cnn": "toy convnet on max(x), squared loss",
              "mlp": f"ReLU MLP ({cfg.mlp_units} units) on {cfg.mlp_images} MNIST images"}
    plots.curves({titles[kind]: {init: r["curve"] for init, r in runs.items()} for kind, runs in inits.items()},
                 loss_png, "full-batch step", "training loss", title="zero vs Glorot vs He initialisation", logy=True)
    summary = {
        "section": "1",
        "config": config_json(cfg),
        "sigmoid": sig,
        "zero_init": {kind: {init: {k: v for k, v in r.items() if k != "curve"} for init, r in runs.items()}
                      for kind, runs in inits.items()},
        "figures": {"sigmoid": str(sigmoid_png), "init_loss": str(loss_png)},
    }
    return write_summary(run_dir, summary)


def parser() -> argparse.ArgumentParser:
    d = TheoryConfig()
    p = argparse.ArgumentParser(prog="python -m kerasdl.theory",
                                description="Section 1: the sigmoid derivative identity and zero vs random "
                                "initialisation, measured.")
    p.add_argument("--steps", type=positive(int), default=d.steps, help=f"full-batch training steps per run (default {d.steps})")
    p.add_argument("--toy-lr", type=positive(float), default=d.toy_lr, help=f"SGD rate for the toy convnet (default {d.toy_lr})")
    p.add_argument("--mlp-lr", type=positive(float), default=d.mlp_lr, help=f"SGD rate for the MNIST MLP (default {d.mlp_lr})")
    p.add_argument("--mlp-images", type=positive(int), default=d.mlp_images,
                   help=f"MNIST training images for the MLP (default {d.mlp_images})")
    p.add_argument("--mlp-units", type=positive(int), default=d.mlp_units, help=f"MLP hidden width (default {d.mlp_units})")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    p.add_argument("--run-dir", type=Path, default=d.run_dir, help=f"output directory (default {d.run_dir})")
    p.add_argument("--quiet", action="store_true",
                   help="no progress lines on stderr (stdout keeps only the JSON summary either way)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    quiet = vars(args).pop("quiet")
    with progress(quiet):
        summary = run(TheoryConfig(**vars(args)))
    print(json.dumps(summary))
    return 0



def cli() -> None:
    """Console-script entry point: errors become one line and exit code 2."""
    sys.exit(run_cli(main, "python -m kerasdl.theory"))


if __name__ == "__main__":
    cli()
