"""End to end, as a user runs it: `python -m kerasdl.mnist` then `python -m kerasdl.predict`
on the real MNIST file, small slices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import last_json, run_module

# Measured on 3000 training images, 1 epoch (seed 0): test accuracy on the first 3000 test
# images was linear 0.85, mlp 0.88, cnn 0.91 (see README). Floors leave a wide margin.
FLOORS = {"linear": 0.70, "mlp": 0.75, "cnn": 0.75}


@pytest.fixture(scope="module", params=["linear", "mlp", "cnn"])
def trained(request, real_mnist, tmp_path_factory):
    name = request.param
    work = tmp_path_factory.mktemp(name)
    proc = run_module("kerasdl.mnist", name, "--limit", 3000, "--epochs", 1, "--quiet",
                      "--run-dir", work / "run", "--export-dir", work / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return name, work, last_json(proc.stdout)


def test_training_writes_every_artifact_and_reports_json(trained):
    name, work, summary = trained
    for key in ("model", "epochs", "test_accuracy", "test_loss", "train_seconds", "saved_model", "keras_model",
                "history_csv", "history_plot"):
        assert key in summary
    assert summary["model"] == name and summary["epochs"] == 1
    assert summary["test_accuracy"] >= FLOORS[name]
    assert Path(summary["saved_model"], "saved_model.pb").is_file()
    assert Path(summary["keras_model"]).is_file()
    assert Path(summary["history_plot"]).stat().st_size > 10_000
    header = Path(summary["history_csv"]).read_text().splitlines()[0].split(",")
    assert {"loss", "val_loss", "test_loss", "accuracy", "val_accuracy", "test_accuracy"} <= set(header)


def test_predict_classifies_real_test_digits(trained, real_mnist, tmp_path):
    _, work, summary = trained
    raw = np.load(real_mnist)
    digits, labels = raw["x_test"][-20:], raw["y_test"][-20:]  # digits the run never saw
    np.save(tmp_path / "digits.npy", digits)
    proc = run_module("kerasdl.predict", summary["saved_model"], tmp_path / "digits.npy", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout.splitlines()[-1])
    assert len(rows) == 20
    correct = sum(r["digit"] == int(y) for r, y in zip(rows, labels))
    assert correct >= 14, f"only {correct}/20 right"


def test_predict_reads_a_png_with_a_light_background(trained, real_mnist, tmp_path):
    from PIL import Image

    _, _, summary = trained
    raw = np.load(real_mnist)
    Image.fromarray(255 - raw["x_test"][0]).save(tmp_path / "seven.png")  # dark 7 on white paper
    proc = run_module("kerasdl.predict", summary["saved_model"], tmp_path / "seven.png")
    assert proc.returncode == 0, proc.stderr[-2000:]
    path, digit, prob = proc.stdout.split()
    assert path.endswith("seven.png") and digit == "7" and 0.0 <= float(prob) <= 1.0


@pytest.mark.parametrize("args,needle", [
    (["resnet"], "invalid choice"),
    (["cnn", "--epochs", "0"], "--epochs"),
    (["cnn", "--lr", "-1"], "--lr"),
    (["cnn", "--limit", "0"], "--limit"),
    (["cnn", "--batch-size", "x"], "--batch-size"),
])
def test_bad_training_flags_exit_2_with_a_message(args, needle, tmp_path):
    proc = run_module("kerasdl.mnist", *args, "--run-dir", tmp_path / "r", "--export-dir", tmp_path / "m")
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


def test_missing_data_file_exits_2_and_names_it(tmp_path):
    missing = tmp_path / "nowhere.npz"
    proc = run_module("kerasdl.mnist", "linear", "--run-dir", tmp_path / "r", "--export-dir", tmp_path / "m",
                      env={"KERASDL_MNIST": str(missing)})
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "KERASDL_MNIST" in proc.stderr and "Traceback" not in proc.stderr


def test_predict_bad_inputs_exit_2(trained, tmp_path):
    _, work, summary = trained
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    for args, needle in [
        ([summary["saved_model"], tmp_path / "missing.png"], "no such file"),
        ([summary["saved_model"], fake], "not a readable image"),
        ([tmp_path, fake], "not a readable image"),
    ]:
        proc = run_module("kerasdl.predict", *args)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
    np.save(tmp_path / "ok.npy", np.zeros((28, 28), "uint8"))
    proc = run_module("kerasdl.predict", tmp_path, tmp_path / "ok.npy")
    assert proc.returncode == 2 and "not a SavedModel" in proc.stderr
