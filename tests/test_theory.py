"""kerasdl.theory: the sigmoid identity and the zero-initialisation measurements."""

from __future__ import annotations

import json

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


def test_theory_cli_writes_figures_and_json(tmp_path, fake_mnist):
    proc = run_module("kerasdl.theory", "--steps", 5, "--mlp-images", 300, "--run-dir", tmp_path)
    progress = [line for line in proc.stderr.splitlines() if line.startswith("theory: ")]
    assert len(progress) == 6 and "mlp, he_normal initialisation: loss" in progress[-1], proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 1  # progress on stderr, only the JSON on stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = last_json(proc.stdout)
    for png in summary["figures"].values():
        assert (tmp_path / png.split("/")[-1]).stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["sigmoid"] == summary["sigmoid"]
    bad = run_module("kerasdl.theory", "--steps", 0)
    assert bad.returncode == 2 and "--steps" in bad.stderr
