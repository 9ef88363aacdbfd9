"""kerasdl.training and kerasdl.plots: the shared fit path on a tiny learnable problem."""

from __future__ import annotations

import math

import pytest

from kerasdl import data, models, plots, training


def make_linear(steps_per_epoch: int):
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


def test_the_per_epoch_validation_and_test_scores_are_those_of_evaluate_on_the_last_weights(fake_mnist, tmp_path,
                                                                                            monkeypatch):
    """Over 2,048 test images the recorder evaluates batches it built once per fit, and fit validates
    on batches built once too: the last epoch's scores must be evaluate()'s on the trained model, the
    weights having moved since the first. The training, validation and test pipelines of a
    single-process fit are not autotuned (with tf.data's tuner on, a fit could wait up to a minute
    after its last epoch for the tuner's thread, and each validation took several times longer)."""
    from dataclasses import replace

    import numpy as np

    built = []
    original = training.eval_batches
    monkeypatch.setattr(training, "eval_batches", lambda x, y, b: built.append((len(x), b)) or original(x, y, b))

    split = data.mnist_split("flat", validation_size=100)
    reps = -(-2500 // len(split.x_test))
    split = replace(split, x_test=np.concatenate([split.x_test] * reps)[:2500],
                    y_test=np.concatenate([split.y_test] * reps)[:2500])
    result = training.fit(make_linear, split, tmp_path / "run",
                          training.FitConfig(epochs=2, batch_size=32, verbose=0, tensorboard=False))
    first, last = result.history
    scores = result.model.evaluate(split.x_test, split.y_test, batch_size=1000, verbose=0, return_dict=True)
    assert last["test_loss"] == pytest.approx(scores["loss"], rel=1e-6) != first["test_loss"]
    assert last["test_accuracy"] == pytest.approx(scores["accuracy"], abs=1e-7)
    val = result.model.evaluate(split.x_val, split.y_val, batch_size=32, verbose=0, return_dict=True)
    assert last["val_loss"] == pytest.approx(val["loss"], rel=1e-6) != first["val_loss"]
    assert last["val_accuracy"] == pytest.approx(val["accuracy"], abs=1e-7)
    assert built == [(len(split.x_val), 1000), (2500, 1000)]  # the validation set, then the test set, once each
    batches, _ = training.train_batches(split.x_train, split.y_train, 32, seed=0)
    assert not batches.options().autotune.enabled
    assert not training.eval_batches(split.x_val, split.y_val, 1000).options().autotune.enabled


def test_same_seed_same_history(fake_mnist, tmp_path):
    split = data.mnist_split("flat", validation_size=100)
    cfg = training.FitConfig(epochs=2, batch_size=32, seed=3, verbose=0, tensorboard=False)
    a = training.fit(make_linear, split, tmp_path / "a", cfg).history
    b = training.fit(make_linear, split, tmp_path / "b", cfg).history
    assert a == b


def test_many_steps_per_call_train_the_same_steps_and_the_same_weights(fake_mnist, tmp_path):
    assert training.execution_steps(430) == 10 and training.execution_steps(29) == 1  # divisors only
    assert training.execution_steps(48) == 16 and training.execution_steps(28, most=5) == 4
    split = data.mnist_split("flat", validation_size=100)
    steps = math.ceil(len(split.x_train) / 25)
    assert training.execution_steps(steps) > 1, steps  # the slice must give the grouped run something to group
    runs = {}
    for per_call in (1, None):  # None: execution_steps(steps), several steps per call
        cfg = training.FitConfig(epochs=2, batch_size=25, seed=3, verbose=0, tensorboard=False,
                                 steps_per_execution=per_call)
        runs[per_call] = training.fit(make_linear, split, tmp_path / str(per_call), cfg)
    plain, grouped = runs[1], runs[None]
    assert grouped.model.steps_per_execution == training.execution_steps(steps) > 1
    assert int(plain.model.optimizer.iterations) == int(grouped.model.optimizer.iterations) == 2 * steps
    assert training.weights_digest(plain.model) == training.weights_digest(grouped.model)
    assert plain.history == grouped.history


def test_diverging_run_is_flagged_and_stopped(fake_mnist, tmp_path):
    split = data.mnist_split("flat", validation_size=100)
    make = lambda steps_per_epoch: models.compile_classifier(models.mlp(units=32), "sgd", lr=1e6)  # noqa: E731
    result = training.fit(make, split, tmp_path / "nan", training.FitConfig(epochs=5, batch_size=32, verbose=0,
                                                                           terminate_on_nan=True, tensorboard=False))
    assert result.diverged
    assert any(not math.isfinite(r["loss"]) for r in result.history)


def test_history_plot_draws_one_line_per_split(tmp_path):
    rows = [{"epoch": e, "loss": 1.0 / (e + 1), "accuracy": 0.5 + e / 10, "val_loss": 1.1 / (e + 1),
             "val_accuracy": 0.5, "test_loss": 1.2 / (e + 1), "test_accuracy": 0.5} for e in range(3)]
    fig = plots.history(rows, tmp_path / "h.png", title="t")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_ax, acc_ax = fig.axes
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"train", "val", "test"}
        for split, line in lines.items():
            key = metric if split == "train" else f"{split}_{metric}"
            assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == [r[key] for r in rows]


def test_a_resumed_run_lists_every_epoch_once_whatever_the_crash_window(fake_mnist, tmp_path):
    """Kill the process inside the recorder at epoch 2, before or after it writes its row (the
    backup is taken after the row): the resumed run's history.csv has epochs 0..3, each once."""
    import subprocess
    import sys

    from conftest import ROOT

    script = """
import os, sys
from kerasdl import data, models, training
when, run_dir = sys.argv[1], sys.argv[2]
write = training.write_history
def crash(rows, path):
    if when == "before" and rows[-1]["epoch"] == 2:
        os._exit(9)
    write(rows, path)
    if when == "after" and rows[-1]["epoch"] == 2:
        os._exit(9)
if when != "resume":
    training.write_history = crash
split = data.mnist_split("flat", validation_size=100)
make = lambda steps: models.compile_classifier(models.linear(), lr=1e-2)
training.fit(make, split, run_dir, training.FitConfig(epochs=4, batch_size=64, verbose=0, tensorboard=False))
"""
    for when in ("before", "after"):
        run_dir = tmp_path / when
        crashed = subprocess.run([sys.executable, "-c", script, when, str(run_dir)], cwd=ROOT, capture_output=True)
        assert crashed.returncode == 9, crashed.stderr[-2000:]
        assert (run_dir / "backup").is_dir()
        resumed = subprocess.run([sys.executable, "-c", script, "resume", str(run_dir)], cwd=ROOT, capture_output=True)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        epochs = [r["epoch"] for r in training.read_history(run_dir / "history.csv")]
        assert epochs == [0, 1, 2, 3], (when, epochs)


def test_importing_kerasdl_leaves_the_matplotlib_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import kerasdl, kerasdl.plots, kerasdl.training, "
            "tuning.figures; print(matplotlib.get_backend())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "svg"


def test_unknown_distribute_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown distribute"):
        training.strategy_for("ring")
