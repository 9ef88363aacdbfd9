"""End to end, as a user runs it: `python -m kerasdl.mnist` then `python -m kerasdl.predict`
on the real MNIST file, small slices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import last_json, run_module

# Measured with --limit 3000 --epochs 1 --seed 0 (2,700 training images, 22 Adam steps):
# test accuracy on the first 3,000 test images linear 0.586, mlp 0.818, cnn 0.766; on the
# last 50 test digits (never seen) 12/20, 13/20 and 16/20 of the last 20 were right.
# Floors leave a margin of about 0.1 (chance is 0.1).
FLOORS = {"linear": 0.45, "mlp": 0.65, "cnn": 0.65}


@pytest.fixture(scope="module", params=["linear", "mlp", "cnn"])
def trained(request, real_mnist, tmp_path_factory):
    name = request.param
    work = tmp_path_factory.mktemp(name)
    proc = run_module("kerasdl.mnist", name, "--limit", 3000, "--epochs", 1, "--quiet",
                      "--run-dir", work / "run", "--export-dir", work / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "" and len(proc.stdout.strip().splitlines()) == 1  # --quiet: the JSON line only
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
    card = json.loads(Path(summary["saved_model"], "model_card.json").read_text())
    assert card["name"] == name and card["results"]["test_accuracy"] == summary["test_accuracy"]
    assert card["training"] == summary["config"] and card["data"]["train_images"] == summary["train_images"]
    assert {"tensorflow", "keras", "python", "machine"} <= set(card["environment"])
    assert card["how_the_recipe_was_chosen"]
    assert "## results" in Path(summary["saved_model"], "model_card.md").read_text()
    assert Path(summary["history_plot"]).stat().st_size > 10_000
    header = Path(summary["history_csv"]).read_text().splitlines()[0].split(",")
    assert {"loss", "val_loss", "test_loss", "accuracy", "val_accuracy", "test_accuracy"} <= set(header)


def test_predict_classifies_real_test_digits(trained, real_mnist, tmp_path):
    name, work, summary = trained
    raw = np.load(real_mnist)
    digits, labels = raw["x_test"][-50:], raw["y_test"][-50:]  # digits the run never saw
    np.save(tmp_path / "digits.npy", digits)
    proc = run_module("kerasdl.predict", summary["saved_model"], tmp_path / "digits.npy", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout.splitlines()[-1])
    assert len(rows) == 50
    correct = sum(r["digit"] == int(y) for r, y in zip(rows, labels))
    assert correct / 50 >= FLOORS[name] - 0.05, f"only {correct}/50 right"


def test_predict_inverts_a_png_with_a_light_background(trained, real_mnist, tmp_path):
    from PIL import Image

    _, _, summary = trained
    digit = np.load(real_mnist)["x_test"][0]
    Image.fromarray(255 - digit).save(tmp_path / "paper.png")  # dark 7 on white paper
    np.save(tmp_path / "mnist.npy", digit)  # the same 7 as MNIST stores it
    proc = run_module("kerasdl.predict", summary["saved_model"], tmp_path / "paper.png", tmp_path / "mnist.npy",
                      "--raw")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (png, png_digit, png_prob), (npy, npy_digit, npy_prob) = (line.split() for line in proc.stdout.splitlines()[-2:])
    assert png.endswith("paper.png") and npy.endswith("mnist.npy")
    assert png_digit == npy_digit and float(png_prob) == pytest.approx(float(npy_prob), abs=1e-3)


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


def test_predict_bad_inputs_exit_2(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    for args, needle in [
        ([tmp_path, tmp_path / "missing.png"], "no such file"),
        ([tmp_path, fake], "not a readable image"),
    ]:
        proc = run_module("kerasdl.predict", *args)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
    np.save(tmp_path / "ok.npy", np.zeros((28, 28), "uint8"))
    proc = run_module("kerasdl.predict", tmp_path, tmp_path / "ok.npy")
    assert proc.returncode == 2 and "not a SavedModel" in proc.stderr
