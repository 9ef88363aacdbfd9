"""Section 1: backprop facts, measured rather than asserted.

    python -m kerasdl.theory [--steps 300]

1. The sigmoid's derivative is s(x)(1 - s(x)): checked against tf.GradientTape on a dense grid.
2. Zero initialisation: in the toy convnet and in a small ReLU MLP on MNIST, every weight at 0
   gives zero gradients to every weight behind a ReLU (the ReLUs output 0), so those never
   move, while an output bias, which sees no ReLU, still learns; Glorot and He initialisation
   train. Measured per weight tensor, at step 0 and after training.
3. A learned activation parameter shared by all the units of a layer adds no expressive power
   when it folds into the affine maps: relu(a z) (scale a > 0, into the next kernel) and
   relu(z - t) (threshold t, into this bias). The write-up's MLP is trained with each and
   without, same seeds; each trained model is folded into a plain-ReLU MLP and compared on the
   test set. The contrast: a shared leaky slope does not fold, and one such unit fits |x|,
   which one ReLU unit (monotone) cannot.

Writes runs/theory/{sigmoid.png, init_loss.png, shared_accuracy.png, shared_contrast.png,
summary.json}; prints the summary as one JSON line.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kerasdl.summary import config_json, write as write_summary
from kerasdl.errors import add_defaulted, add_quiet, entry_point, parse_config_args, positive, print_summary, writable_dir
from kerasdl import locks

log = logging.getLogger("kerasdl.theory")

INITIALISERS = ("zeros", "glorot_uniform", "he_normal")


@dataclass
class TheoryConfig:
    """Section 1's measurements; the defaults took 87 s on 2 cores before the shared-parameter
    runs, which add about 80 s more (README: measured under contention, scaled)."""

    steps: int = 300  # full-batch gradient steps per initialisation
    toy_lr: float = 0.01
    mlp_lr: float = 0.1
    mlp_images: int = 2000
    mlp_units: int = 64
    shared_units: int = 512  # the write-up's MLP, with and without a shared activation parameter
    shared_epochs: int = 3
    shared_seeds: int = 3
    shared_lr: float = 1e-3
    shared_images: int | None = None  # None: all 60,000 (55,000 train after the validation carve)
    contrast_epochs: int = 15  # one-unit fits to |x|: 1,024 points, batch 32, 32 steps an epoch
    contrast_seeds: int = 3
    contrast_lr: float = 0.05
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
    # No validation pass: only the training loss and the weights are measured here, and a
    # validation after each of 300 one-step epochs was over half of these runs' time.
    mnist = replace(data.mnist_split("flat", limit=cfg.mlp_images), x_val=None, y_val=None)
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


# ---- a parameter shared by all the units of a layer ------------------------------------------

FOLD_TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
"""Max |difference| of the softmax outputs allowed between a shared-parameter MLP and its fold:
float32 Keras forward passes (the two round differently) and float64 NumPy ones (the fold is exact)."""


def folded_weights(model) -> list[list[np.ndarray]]:
    """[kernel, bias] of each Dense layer of the plain-ReLU MLP that computes what the
    `models.mlp_shared` `model` computes, in float64 (the fold itself rounds nothing).

    A shared scale a > 0 moves into the next Dense kernel (relu(a z) = a relu(z), so
    relu(a z) W' = relu(z) (a W')); a shared threshold t into this layer's bias
    (relu(x W + b - t) = relu(x W + (b - t))). A leaky slope has no such fold: ValueError.
    """
    from keras import layers

    from kerasdl import models

    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    shared = [layer for layer in model.layers if not isinstance(layer, layers.Dense)]
    weights = [[np.asarray(w, dtype=np.float64) for w in layer.get_weights()] for layer in dense]
    for i, act in enumerate(shared):
        if isinstance(act, models.SharedScaleReLU):
            weights[i + 1][0] = weights[i + 1][0] * np.exp(np.float64(act.log_scale.numpy()))
        elif isinstance(act, models.SharedThresholdReLU):
            weights[i][1] = weights[i][1] - np.float64(act.threshold.numpy())
        elif not isinstance(act, layers.ReLU):
            raise ValueError(f"layer {act.name} ({act.__class__.__name__}) does not fold into the affine maps")
    return weights


def fold(model):
    """The plain-ReLU `models.mlp` with `folded_weights(model)` (in float32): the same function as
    the shared-parameter `model`, with exactly its Dense weights and none extra."""
    from keras import layers

    from kerasdl import models

    weights = folded_weights(model)
    plain = models.mlp(hidden_layers=len(weights) - 1, units=weights[0][0].shape[1])
    for layer, w in zip([x for x in plain.layers if isinstance(x, layers.Dense)], weights):
        layer.set_weights([v.astype("float32") for v in w])
    return plain


def forward64(model, x: np.ndarray, dense_weights: list | None = None) -> np.ndarray:
    """`model`'s output computed in float64 NumPy (MLPs of Dense layers and the activations of
    `models.shared_activation` only), free of float32 rounding; `dense_weights` replace the
    Dense layers' own weights, in order (e.g. `folded_weights` before their rounding to float32)."""
    from keras import layers

    from kerasdl import models

    h = np.asarray(x, dtype=np.float64)
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    dense = iter(dense_weights or [])
    for layer in model.layers:
        w = [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]
        if isinstance(layer, layers.Dense):
            kernel, bias = next(dense) if dense_weights else w
            h = h @ kernel + bias
            act = layer.get_config()["activation"]
            if act == "softmax":
                h = np.exp(h - h.max(axis=1, keepdims=True))
                h = h / h.sum(axis=1, keepdims=True)
            elif act == "relu":
                h = relu(h)
            elif act != "linear":
                raise ValueError(f"forward64: activation {act!r} of {layer.name} not handled")
        elif isinstance(layer, models.SharedScaleReLU):
            h = relu(np.exp(w[0]) * h)
        elif isinstance(layer, models.SharedThresholdReLU):
            h = relu(h - w[0])
        elif isinstance(layer, layers.ReLU):
            h = relu(h)
        elif isinstance(layer, layers.PReLU):
            h = np.where(h > 0, h, w[0] * h)
        else:
            raise ValueError(f"forward64: layer {layer.name} ({layer.__class__.__name__}) not handled")
    return h


def fold_check(shared, plain, x: np.ndarray, plain_weights64: list | None = None) -> dict:
    """How far `plain` (a fold of `shared`) is from it on `x`: max |difference| of the outputs in
    float32 (the two Keras models) and in float64 (NumPy; `plain` with `plain_weights64`, the
    fold before rounding, where given), and how many argmax predictions differ."""
    p32, q32 = (np.asarray(m(x, training=False), dtype=np.float64) for m in (shared, plain))
    p64, q64 = forward64(shared, x), forward64(plain, x, plain_weights64)
    out = {"images": int(len(x)),
           "max_abs_diff_float32": float(np.max(np.abs(p32 - q32))),
           "max_abs_diff_float64": float(np.max(np.abs(p64 - q64))),
           "prediction_mismatches": int(np.sum(p32.argmax(1) != q32.argmax(1))),
           "shared_weights": int(shared.count_params()), "plain_weights": int(plain.count_params())}
    out["exact"] = (out["max_abs_diff_float32"] <= FOLD_TOLERANCE["float32"]
                    and out["max_abs_diff_float64"] <= FOLD_TOLERANCE["float64"] and out["prediction_mismatches"] == 0)
    return out


def shared_parameter_mnist(cfg: TheoryConfig) -> dict:
    """The write-up's MLP with plain ReLU, a shared scale and a shared threshold, same seeds each,
    trained through training.fit on MNIST; every trained shared model folded and checked on the test set."""
    from kerasdl import data, models, training

    split = data.mnist_split("flat", limit=cfg.shared_images)
    out = {"accuracy": {k: [] for k in ("relu", "scale", "threshold")}, "learned": {"scale": [], "threshold": []},
           "fold": {"scale": [], "threshold": []}}
    for seed in range(cfg.seed, cfg.seed + cfg.shared_seeds):
        for kind in out["accuracy"]:
            build = (lambda: models.mlp(units=cfg.shared_units)) if kind == "relu" else \
                (lambda: models.mlp_shared(kind, units=cfg.shared_units))
            fit_cfg = training.FitConfig(epochs=cfg.shared_epochs, batch_size=128, seed=seed, restart=True,
                                         test_curve=False, tensorboard=False, backup=False, verbose=0,
                                         title=f"MLP {cfg.shared_units} units, {kind}, seed {seed}")
            result = training.fit(lambda steps: models.compile_classifier(build(), "adam", cfg.shared_lr), split,
                                  cfg.run_dir / "shared" / f"{kind}_seed{seed}", fit_cfg)
            model = result.model
            acc = float(model.evaluate(split.x_test, split.y_test, batch_size=2000, verbose=0, return_dict=True)
                        ["accuracy"])
            out["accuracy"][kind].append(acc)
            note = ""
            if kind != "relu":
                act = model.get_layer(f"{kind}1")
                value = act.scale if kind == "scale" else float(act.threshold.numpy())
                out["learned"][kind].append(value)
                check = fold_check(model, fold(model), split.x_test, folded_weights(model))
                out["fold"][kind].append(check)
                note = (f"; learned {kind} {value:.4f}; fold: max |diff| {check['max_abs_diff_float32']:.2g} "
                        f"(float32), {check['max_abs_diff_float64']:.2g} (float64), "
                        f"{check['prediction_mismatches']} predictions differ")
            log.info("theory: shared parameter, MLP %s, seed %d: test accuracy %.4f%s", kind, seed, acc, note)
    out["test_images"] = int(len(split.x_test))
    out["train_images"] = int(len(split.x_train))
    return out


def contrast_data(points: int = 1024, test_points: int = 2001):
    """|x| on [-1, 1]: a training grid and a finer test grid (a Split, float32, shape (n, 1))."""
    from kerasdl.data import Split

    grid = lambda n: np.linspace(-1.0, 1.0, n, dtype=np.float32)[:, None]  # noqa: E731
    x, xt = grid(points), grid(test_points)
    return Split(x_train=x, y_train=np.abs(x), x_val=None, y_val=None, x_test=xt, y_test=np.abs(xt))


def monotone_mse_bound(x: np.ndarray, y: np.ndarray) -> float:
    """The least MSE any monotone function reaches on (x, y) (isotonic regression, both directions).
    One hidden ReLU unit, v relu(w x + b) + c, is monotone, so it can do no better."""
    from sklearn.isotonic import IsotonicRegression

    x, y = np.ravel(x).astype(np.float64), np.ravel(y).astype(np.float64)
    return float(min(np.mean((IsotonicRegression(increasing=up).fit_transform(x, y) - y) ** 2) for up in (True, False)))


def identity_construction(span: float = 1e3, points: int = 20001) -> dict:
    """One leaky unit with slope alpha = 1 is the identity on any range: z for z > 0, 1 * z otherwise.
    Built as the Keras model, weights set by hand, max |f(x) - x| on [-span, span]."""
    from kerasdl import models

    net = models.scalar_net("leaky")
    net.set_weights([np.ones((1, 1)), np.zeros(1), np.ones(1), np.ones((1, 1)), np.zeros(1)])
    x = np.linspace(-span, span, points, dtype=np.float32)[:, None]
    return {"span": span, "points": points,
            "max_abs_residual": float(np.max(np.abs(np.asarray(net(x, training=False)) - x)))}


def shared_leaky_contrast(cfg: TheoryConfig) -> dict:
    """One hidden unit, fitted to |x| on [-1, 1] through training.fit: a shared leaky slope can
    (alpha = -1 makes the unit |z|), plain ReLU cannot (its fit is monotone: MSE >= the bound).
    Gradient descent does not find alpha = -1 from every seed: every seed's fit is kept."""
    from kerasdl import models, training

    split = contrast_data()
    bound = monotone_mse_bound(split.x_test, split.y_test)
    fits, curves = {"leaky": [], "relu": []}, {}
    for seed in range(cfg.seed, cfg.seed + cfg.contrast_seeds):
        for kind in fits:
            fit_cfg = training.FitConfig(epochs=cfg.contrast_epochs, batch_size=32, seed=seed, restart=True,
                                         test_curve=False, tensorboard=False, backup=False, verbose=0,
                                         title=f"one {kind} unit on |x|, seed {seed}")

            def make(steps, kind=kind):
                net = models.scalar_net(kind)
                net.compile(optimizer=models.optimizer("adam", cfg.contrast_lr), loss="mse")
                return net

            net = training.fit(make, split, cfg.run_dir / "shared" / f"abs_{kind}_seed{seed}", fit_cfg).model
            pred = np.asarray(net(split.x_test, training=False))
            residual = pred - split.y_test
            fit = {"seed": seed, "mse": float(np.mean(residual ** 2)),
                   "max_abs_residual": float(np.max(np.abs(residual)))}
            if kind == "leaky":
                fit["alpha"] = float(net.get_layer("leaky1").get_weights()[0][0])
            fits[kind].append(fit)
            if fit["mse"] <= min(f["mse"] for f in fits[kind]):
                curves[kind] = pred[:, 0]  # each kind's best seed, for the figure
            log.info("theory: one %s unit fitted to |x|, seed %d: test MSE %.3g, max |residual| %.3g%s", kind, seed,
                     fit["mse"], fit["max_abs_residual"], f", alpha {fit['alpha']:.4f}" if "alpha" in fit else "")
    return {"target": "|x| on [-1, 1]", "train_points": int(len(split.x_train)), "test_points": int(len(split.x_test)),
            "relu_mse_lower_bound": bound, "fits": fits, "identity": identity_construction(),
            "curves": {"x": split.x_test[:, 0], "target": split.y_test[:, 0], **curves}}


def shared_parameter_experiments(cfg: TheoryConfig, run_dir: Path) -> dict:
    """Both halves of the shared-parameter fact, with their two figures (paths under "figures")."""
    from kerasdl import plots

    mnist = shared_parameter_mnist(cfg)
    contrast = shared_leaky_contrast(cfg)
    c = contrast.pop("curves")
    accuracy_png, contrast_png = run_dir / "shared_accuracy.png", run_dir / "shared_contrast.png"
    names = {"relu": "plain ReLU", "scale": "relu(a z), shared a", "threshold": "relu(z - t), shared t"}
    plots.strips({names[k]: v for k, v in mnist["accuracy"].items()}, accuracy_png, "test accuracy",
                 title=f"MLP 784-{cfg.shared_units}-10, {cfg.shared_epochs} epochs, one point per seed")
    plots.fits_and_residuals(c["x"], c["target"], {"one shared-leaky unit": c["leaky"], "one ReLU unit": c["relu"]},
                             contrast_png, target_name="|x|",
                             title=f"one hidden unit fitted to |x|, best of {cfg.contrast_seeds} seeds each")
    return {**mnist, "contrast": contrast, "figures": {"shared_accuracy": str(accuracy_png),
                                                        "shared_contrast": str(contrast_png)}}


@locks.one_run_at_a_time(reads_mnist=True)
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
    shared = shared_parameter_experiments(cfg, run_dir)
    figures = shared.pop("figures")
    summary = {
        "section": "1",
        "config": config_json(cfg),
        "sigmoid": sig,
        "zero_init": {kind: {init: {k: v for k, v in r.items() if k != "curve"} for init, r in runs.items()}
                      for kind, runs in inits.items()},
        "shared_parameter": shared,
        "figures": {"sigmoid": str(sigmoid_png), "init_loss": str(loss_png), **figures},
    }
    return write_summary(run_dir, summary)


def parser() -> argparse.ArgumentParser:
    d = TheoryConfig()
    p = argparse.ArgumentParser(prog="python -m kerasdl.theory",
                                description="Section 1: the sigmoid derivative identity, zero vs random "
                                "initialisation, and a parameter shared by all units of a layer, measured.")
    add_defaulted(p, d, [
        ("--steps", positive(int), "full-batch training steps per run"),
        ("--toy-lr", positive(float), "SGD rate for the toy convnet"),
        ("--mlp-lr", positive(float), "SGD rate for the MNIST MLP"),
        ("--mlp-images", positive(int), "MNIST training images for the MLP"),
        ("--mlp-units", positive(int), "MLP hidden width"),
        ("--shared-units", positive(int), "hidden width of the MLP trained with and without a shared activation "
         "parameter"),
        ("--shared-epochs", positive(int), "epochs of each of those MLPs"),
        ("--shared-seeds", positive(int), "seeds per variant (plain ReLU, shared scale, shared threshold)"),
        ("--shared-lr", positive(float), "Adam rate for those MLPs"),
    ])
    p.add_argument("--shared-images", type=positive(int), default=d.shared_images,
                   help="MNIST training images for those MLPs, and as many test images (default: all)")
    add_defaulted(p, d, [
        ("--contrast-epochs", positive(int), "epochs of the one-unit fits to |x|"),
        ("--contrast-seeds", positive(int), "seeds of the one-unit fits to |x|, each kind"),
        ("--contrast-lr", positive(float), "Adam rate of the one-unit fits to |x|"),
        ("--seed", int, "random seed"),
        ("--run-dir", Path, "output directory"),
    ])
    return add_quiet(p)


def main(argv=None) -> int:
    values, quiet = parse_config_args(parser(), argv)
    cfg = TheoryConfig(**values)
    return print_summary(lambda: run(cfg), quiet)


cli = entry_point(main, "python -m kerasdl.theory")


if __name__ == "__main__":
    cli()
