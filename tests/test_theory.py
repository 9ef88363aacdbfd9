"""kerasdl.theory: the sigmoid identity and the zero-initialisation measurements."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import last_json, run_module
from kerasdl import theory


def test_sigmoid_derivative_is_s_times_one_minus_s():
    result = theory.sigmoid_derivative_check()
    assert result["max_abs_error"]["float64"] < 1e-12
    assert result["max_abs_error_vs_finite_differences"] < 1e-8
    assert abs(result["max_derivative"] - 0.25) < 1e-9


def test_zero_init_freezes_the_toy_convnet_and_glorot_trains_it(tmp_path, fake_mnist):
    cfg = theory.TheoryConfig(steps=25, mlp_images=400, mlp_units=16, run_dir=tmp_path)
    runs = theory.zero_init_experiments(cfg)
    zero, glorot = runs["toy_cnn"]["zeros"], runs["toy_cnn"]["glorot_uniform"]
    for name, t in zero["tensors"].items():
        assert t["grad_max_abs_step0"] == 0.0 and t["max_change"] == 0.0, name
    assert zero["final_loss"] == zero["initial_loss"]
    assert set(glorot["moved"]) == set(glorot["tensors"]) and glorot["final_loss"] < 0.7 * glorot["initial_loss"]
    # In the MLP every weight matrix and the hidden bias stay at 0; only the output bias
    # (which sees no ReLU) learns, the class frequencies.
    mlp_zero = runs["mlp"]["zeros"]
    assert mlp_zero["moved"] == ["mlp/softmax/bias"]
    assert runs["mlp"]["he_normal"]["final_loss"] < mlp_zero["final_loss"]


def test_measured_gradients_are_the_ones_training_applies(tmp_path, fake_mnist):
    """One full-batch SGD step moves each weight by exactly lr * gradient: the step-0 gradient
    and the before/after snapshots describe the same model that training.fit trained."""
    cfg = theory.TheoryConfig(steps=1, mlp_images=300, mlp_units=8, run_dir=tmp_path)
    for init, run in theory.zero_init_experiments(cfg)["toy_cnn"].items():
        for name, t in run["tensors"].items():
            assert abs(t["max_change"] - cfg.toy_lr * t["grad_max_abs_step0"]) <= 1e-5 + 1e-3 * t["max_change"], \
                (init, name, t)


def shared_mlp(kind: str, seed: int = 0):
    """A small `mlp_shared` with random weights everywhere (nonzero biases), scale 1.7 or threshold 0.3."""
    from kerasdl import models

    rng = np.random.default_rng(seed)
    model = models.mlp_shared(kind, units=16)
    for w in model.weights:
        w.assign(rng.normal(0, 0.3, w.shape).astype("float32"))
    act = model.get_layer(f"{kind}1")
    if kind == "scale":
        act.log_scale.assign(np.log(1.7))
    else:
        act.threshold.assign(0.3)
    return model, rng.uniform(0, 1, (400, 784)).astype("float32")


@pytest.mark.parametrize("kind", ["scale", "threshold"])
def test_a_shared_scale_or_threshold_folds_exactly_into_a_plain_relu_mlp(kind):
    """Tolerances: float32 outputs within 1e-5 (the two models round differently), float64 within
    1e-12 (the fold itself is exact), no prediction differs; the plain model has one weight fewer."""
    model, x = shared_mlp(kind)
    plain = theory.fold(model)
    check = theory.fold_check(model, plain, x, theory.folded_weights(model))
    assert check["exact"], check
    assert check["max_abs_diff_float32"] <= 1e-5 and check["max_abs_diff_float64"] <= 1e-12
    assert check["prediction_mismatches"] == 0
    assert check["plain_weights"] == check["shared_weights"] - 1
    assert all(layer.__class__.__name__ == "Dense" for layer in plain.layers)
    assert plain.get_layer("hidden1").get_config()["activation"] == "relu"
    # the parameter mattered: the plain MLP with the unfolded weights computes something else
    unfolded = theory.fold(model)
    for layer in ("hidden1", "softmax"):
        unfolded.get_layer(layer).set_weights(model.get_layer(layer).get_weights())
    assert theory.fold_check(model, unfolded, x)["max_abs_diff_float32"] > 1e-3


def test_a_scale_folded_into_the_wrong_layer_fails_the_check():
    model, x = shared_mlp("scale")
    a = model.get_layer("scale1").scale
    broken = theory.fold(model)
    hidden, out = broken.get_layer("hidden1"), broken.get_layer("softmax")
    kernel, bias = hidden.get_weights()
    hidden.set_weights([kernel * a, bias])  # into this layer's kernel: relu(a x W + b) != a relu(x W + b)
    out.set_weights([out.get_weights()[0] / a, out.get_weights()[1]])
    check = theory.fold_check(model, broken, x)
    assert not check["exact"] and check["max_abs_diff_float32"] > 1e-3 and check["max_abs_diff_float64"] > 1e-3


def test_a_shared_leaky_slope_does_not_fold_and_one_leaky_unit_is_the_identity_and_abs():
    from kerasdl import models

    with pytest.raises(ValueError, match="does not fold"):
        theory.fold(models.mlp_shared("leaky", units=4))
    assert theory.identity_construction()["max_abs_residual"] == 0.0
    net = models.scalar_net("leaky")
    net.set_weights([np.ones((1, 1)), np.zeros(1), -np.ones(1), np.ones((1, 1)), np.zeros(1)])  # alpha = -1
    x = np.linspace(-50, 50, 1001, dtype="float32")[:, None]
    assert np.array_equal(np.asarray(net(x)), np.abs(x))
    split = theory.contrast_data()
    bound = theory.monotone_mse_bound(split.x_test, split.y_test)
    assert 0.05 < bound < 0.06  # the best monotone fit of |x| on [-1, 1]: MSE 0.0572
    relu = models.scalar_net("relu")  # any ReLU unit is monotone: never below the bound
    for seed in range(3):
        rng = np.random.default_rng(seed)
        relu.set_weights([rng.normal(size=w.shape).astype("float32") for w in relu.weights])
        assert np.mean((np.asarray(relu(split.x_test)) - split.y_test) ** 2) >= bound - 1e-9


def test_theory_cli_writes_figures_and_json(tmp_path, fake_mnist):
    proc = run_module("kerasdl.theory", "--steps", 5, "--mlp-images", 300, "--shared-units", 8, "--shared-epochs", 1,
                      "--shared-seeds", 1, "--contrast-epochs", 2, "--contrast-seeds", 1, "--run-dir", tmp_path)
    progress = [line for line in proc.stderr.splitlines() if line.startswith("theory: ")]
    assert len(progress) == 11 and "mlp, he_normal initialisation: loss" in progress[5], proc.stderr[-2000:]
    assert "shared parameter, MLP scale, seed 0: test accuracy" in progress[7] and "fold: max |diff|" in progress[7]
    assert len(proc.stdout.strip().splitlines()) == 1  # progress on stderr, only the JSON on stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = last_json(proc.stdout)
    assert set(summary["figures"]) == {"sigmoid", "init_loss", "shared_accuracy", "shared_contrast"}
    for png in summary["figures"].values():
        assert (tmp_path / png.split("/")[-1]).stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["sigmoid"] == summary["sigmoid"]
    shared = summary["shared_parameter"]  # trained through training.fit, then folded on the test set
    assert {k: len(v) for k, v in shared["accuracy"].items()} == {"relu": 1, "scale": 1, "threshold": 1}
    assert all(check["exact"] and check["images"] == 200 for checks in shared["fold"].values() for check in checks)
    assert shared["learned"]["scale"][0] != 1.0 and shared["learned"]["threshold"][0] != 0.0  # they were learned
    assert (tmp_path / "shared" / "scale_seed0" / "history.csv").exists()
    assert len(shared["contrast"]["fits"]["leaky"]) == 1 and shared["contrast"]["relu_mse_lower_bound"] > 0.05
    bad = run_module("kerasdl.theory", "--steps", 0)
    assert bad.returncode == 2 and "--steps" in bad.stderr
