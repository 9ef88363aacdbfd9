"""kerasdl.training and kerasdl.plots: the shared fit path on a tiny learnable problem."""

from __future__ import annotations

import math

import pytest

from kerasdl import data, models, plots, training


def make_linear():
    return models.compile_classifier(models.linear(), lr=1e-2)


def test_fit_records_train_val_test_curves_and_learns(fake_mnist, tmp_path):
    split = data.mnist_split("flat", validation_size=100)
    result = training.fit(make_linear, split, tmp_path / "run", training.FitConfig(epochs=3, batch_size=32, verbose=0))
    rows = training.read_history(result.history_csv)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= set(rows[0])
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["test_accuracy"] > 0.9  # the fake digits are easy
    assert result.history_plot.stat().st_size > 10_000
    assert (tmp_path / "run" / "tensorboard").is_dir()
    assert not (tmp_path / "run" / "backup").exists(), "a finished run leaves no backup"
    assert result.train_seconds > 0 and not result.diverged


def test_same_seed_same_history(fake_mnist, tmp_path):
    split = data.mnist_split("flat", validation_size=100)
    cfg = training.FitConfig(epochs=2, batch_size=32, seed=3, verbose=0, tensorboard=False)
    a = training.fit(make_linear, split, tmp_path / "a", cfg).history
    b = training.fit(make_linear, split, tmp_path / "b", cfg).history
    assert a == b


def test_diverging_run_is_flagged_and_stopped(fake_mnist, tmp_path):
    split = data.mnist_split("flat", validation_size=100)
    make = lambda: models.compile_classifier(models.mlp(units=32), "sgd", lr=1e6)  # noqa: E731
    result = training.fit(make, split, tmp_path / "nan", training.FitConfig(epochs=5, batch_size=32, verbose=0,
                                                                           terminate_on_nan=True, tensorboard=False))
    assert result.diverged
    assert any(not math.isfinite(r["loss"]) for r in result.history)


def test_history_plot_draws_one_line_per_split(tmp_path):
    rows = [{"epoch": e, "loss": 1.0 / (e + 1), "accuracy": 0.5 + e / 10, "val_loss": 1.1 / (e + 1),
             "val_accuracy": 0.5, "test_loss": 1.2 / (e + 1), "test_accuracy": 0.5} for e in range(3)]
    path = plots.history(rows, tmp_path / "h.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_distribute_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown distribute"):
        training.strategy_for("ring")
