"""Reliability: resume after kill -9, reproducible seeds, every bad input answered, tf.distribute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, free_ports, last_json, run_module, synthetic_mnist
from kerasdl import training


def test_killed_run_resumes_from_the_last_finished_epoch(real_mnist, tmp_path):
    args = [sys.executable, "-m", "kerasdl.mnist", "cnn", "--limit", "6000", "--epochs", "5", "--quiet",
            "--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "models")]
    history = tmp_path / "run" / "history.csv"
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(training.read_history(history)) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the third epoch
    proc.wait()
    assert (tmp_path / "run" / "backup").is_dir()
    assert training.check_backup(tmp_path / "run" / "backup") is not None  # a resumable backup
    assert not list((tmp_path / "models").glob("cnn/[0-9]*")), "nothing may be exported mid-training"

    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = last_json(again.stdout)
    # Killed once two rows were on disk: epoch 1's backup may or may not have been committed
    # (its row is written first), so the run resumes at epoch 1 or 2, never from scratch.
    assert summary["resumed_from_epoch"] in (1, 2)
    rows = training.read_history(history)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]  # continuous, each epoch once
    assert summary["test_accuracy"] > 0.9
    assert not (tmp_path / "run" / "backup").exists()


def test_restart_ignores_a_backup(real_mnist, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": 7}))
    proc = run_module("kerasdl.mnist", "linear", "--limit", 1000, "--epochs", 2, "--restart", "--quiet",
                      "--run-dir", run_dir, "--export-dir", tmp_path / "models")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert last_json(proc.stdout)["resumed_from_epoch"] == 0
    assert [r["epoch"] for r in training.read_history(run_dir / "history.csv")] == [0, 1]


def test_same_seed_gives_identical_histories_and_weights(real_mnist, tmp_path):
    runs = []
    for name in ("a", "b"):
        proc = run_module("kerasdl.mnist", "mlp", "--limit", 5000, "--epochs", 2, "--seed", 1, "--quiet",
                          "--run-dir", tmp_path / name, "--export-dir", tmp_path / f"m{name}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(last_json(proc.stdout))
    a, b = runs
    assert Path(a["history_csv"]).read_text() == Path(b["history_csv"]).read_text()
    assert a["weights_sha256"] == b["weights_sha256"]


# ---- bad inputs: the README's table, one row per case ------------------------------------

def _npz(path: Path, **changes) -> Path:
    arrays = {**synthetic_mnist(40, 20), **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _data_case(make):
    """A KERASDL_MNIST case: `make(tmp)` writes the broken file and returns its path."""
    return lambda tmp: (["kerasdl.mnist", "linear"], {"KERASDL_MNIST": str(make(tmp))})


def _truncated(tmp):
    whole = _npz(tmp / "whole.npz")
    cut = tmp / "truncated.npz"
    cut.write_bytes(whole.read_bytes()[:2000])
    return cut


def _png(tmp, size, text=False):
    path = tmp / f"digit{size}.png"
    if text:
        path.write_text("hello, I am not a picture")
    else:
        from PIL import Image

        Image.fromarray(np.zeros((size, size), "uint8")).save(path)
    return path


def _npy(tmp, array):
    path = tmp / "x.npy"
    np.save(path, array)
    return path


def _a_file(tmp):
    blocker = tmp / "a_file"
    blocker.write_text("")
    return blocker / "sub"


BAD_INPUTS = {
    "unknown model": (lambda tmp: (["kerasdl.mnist", "resnet"], {}), "invalid choice: 'resnet'"),
    "epochs 0": (lambda tmp: (["kerasdl.mnist", "cnn", "--epochs", "0"], {}), "--epochs: 0 must be > 0"),
    "batch size -5": (lambda tmp: (["kerasdl.mnist", "cnn", "--batch-size", "-5"], {}), "--batch-size"),
    "lr 0": (lambda tmp: (["kerasdl.mnist", "cnn", "--lr", "0"], {}), "--lr: 0 must be > 0"),
    "lr not a number": (lambda tmp: (["kerasdl.mnist", "cnn", "--lr", "fast"], {}), "'fast' is not a float"),
    "limit 0": (lambda tmp: (["kerasdl.mnist", "cnn", "--limit", "0"], {}), "--limit: 0 must be > 0"),
    "data file missing": (_data_case(lambda tmp: tmp / "nope.npz"), "no such file"),
    "data file empty": (_data_case(lambda tmp: (tmp / "empty.npz").write_bytes(b"") or tmp / "empty.npz"),
                        "empty file"),
    "data file truncated": (_data_case(_truncated), "not a readable npz"),
    "data wrong keys": (_data_case(lambda tmp: _npz(tmp / "k.npz", x_test=None)), "missing key(s) x_test"),
    "data wrong shape": (_data_case(lambda tmp: _npz(tmp / "s.npz", x_train=np.zeros((40, 32, 32), "uint8"))),
                         "x_train has shape (40, 32, 32)"),
    "data wrong dtype": (_data_case(lambda tmp: _npz(tmp / "d.npz", x_train=np.zeros((40, 28, 28), "float32"))),
                         "expected uint8"),
    "labels outside 0..9": (_data_case(lambda tmp: _npz(tmp / "l.npz", y_train=np.full(40, 12, "uint8"))),
                            "labels in 12..12"),
    "mismatched lengths": (_data_case(lambda tmp: _npz(tmp / "m.npz", y_test=np.zeros(19, "uint8"))),
                           "20 images but y_test has 19 labels"),
    "autoencoder: data file missing": (lambda tmp: (["kerasdl.autoencoder", "--run-dir", str(tmp / "run"),
                                                     "--export-dir", str(tmp / "new_models")],
                                                    {"KERASDL_MNIST": str(tmp / "nope.npz")}), "no such file"),
    "unwritable --run-dir": (lambda tmp: (["kerasdl.mnist", "linear", "--run-dir", str(_a_file(tmp))], {}),
                             "--run-dir"),
    "unwritable --export-dir": (lambda tmp: (["kerasdl.mnist", "linear", "--export-dir", str(_a_file(tmp))], {}),
                                "--export-dir"),
    "predict: missing file": (lambda tmp: (["kerasdl.predict", str(tmp), str(tmp / "no.png")], {}), "no such file"),
    "predict: text file named .png": (lambda tmp: (["kerasdl.predict", str(tmp), str(_png(tmp, 0, text=True))], {}),
                                      "not a readable image"),
    "predict: --raw with an image of another size": (lambda tmp: (["kerasdl.predict", str(tmp), str(_png(tmp, 40)),
                                                                   "--raw"], {}), "--raw takes 28x28 only"),
    "predict: image without ink": (lambda tmp: (["kerasdl.predict", str(tmp), str(_png(tmp, 40))], {}),
                                   "no ink found"),
    "predict: npy of wrong shape": (lambda tmp: (["kerasdl.predict", str(tmp), str(_npy(tmp, np.zeros((3, 784))))],
                                                 {}), "expected (28, 28) or (N, 28, 28)"),
    "predict: npy with NaN": (lambda tmp: (["kerasdl.predict", str(tmp), str(_npy(tmp, np.full((28, 28), np.nan)))],
                                           {}), "NaN"),
    "predict: directory not a SavedModel": (lambda tmp: (["kerasdl.predict", str(tmp),
                                                          str(_npy(tmp, np.zeros((28, 28), "uint8")))], {}),
                                            "not a SavedModel"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_bad_input_gets_one_clear_line_and_exit_2(case, tmp_path):
    make, needle = BAD_INPUTS[case]
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "linear.keras").write_bytes(b"previous model")  # must survive untouched
    args, env = make(tmp_path)
    if args[0] == "kerasdl.mnist" and "--export-dir" not in args:
        args += ["--export-dir", str(models_dir)]
    if args[0] == "kerasdl.mnist" and "--run-dir" not in args:
        args += ["--run-dir", str(tmp_path / "run")]
    proc = run_module(*args, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    ours = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(ours) == 1 and needle in ours[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in models_dir.iterdir()) == ["linear.keras"]
    assert (models_dir / "linear.keras").read_bytes() == b"previous model"
    assert not (tmp_path / "run").exists(), "a refused run created its run directory"
    assert not (tmp_path / "new_models").exists(), "a refused run created its export directory"


# ---- tf.distribute --------------------------------------------------------------------------

MIRRORED_ON_TWO_CPUS = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kerasdl import mnist, training
fit = training.fit
def fit_and_report_lr(*args, **kwargs):
    result = fit(*args, **kwargs)
    opt = result.model.optimizer
    print(json.dumps({"final_lr": float(opt.learning_rate), "iterations": int(opt.iterations.value.numpy())}))
    return result
training.fit = fit_and_report_lr
print(json.dumps(mnist.train(mnist.config_for("mlp", **json.loads(sys.argv[1])), verbose=0)))
"""


def test_mirrored_strategy_over_two_logical_cpus(real_mnist, tmp_path):
    overrides = dict(limit=2000, epochs=2, units=64, distribute="mirrored", schedule="cosine", lr=1e-3,
                     run_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "models"))
    proc = subprocess.run([sys.executable, "-c", MIRRORED_ON_TWO_CPUS, json.dumps(overrides)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    assert summary["replicas"] == 2
    assert summary["test_accuracy"] > 0.5  # measured 0.633: 2 epochs of 7 steps at global batch 256
    # The cosine decay spans the run's real step count (1,800 images at global batch 256: 8
    # steps an epoch), so the last step's rate is the schedule's final value, 1% of the peak;
    # sized with the per-replica batch (15 steps an epoch) it would still be about half the peak.
    lr = json.loads(proc.stdout.strip().splitlines()[-2])
    assert summary["train_images"] == 1800 and lr["iterations"] == 2 * 8
    assert lr["final_lr"] == pytest.approx(1e-5, rel=1e-3)
    assert Path(summary["saved_model"], "saved_model.pb").is_file()


def test_multiworker_strategy_with_two_local_workers_ends_with_identical_weights(real_mnist, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    args = [sys.executable, "-m", "kerasdl.mnist", "mlp", "--limit", "2000", "--epochs", "2", "--units", "64",
            "--distribute", "multiworker", "--quiet", "--run-dir", str(tmp_path / "run"),
            "--export-dir", str(tmp_path / "models")]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        out = open(tmp_path / f"w{index}.out", "w")
        err = open(tmp_path / f"w{index}.err", "w")
        procs.append(subprocess.Popen(args, cwd=ROOT, env={**os.environ, "TF_CONFIG": tf_config},
                                      stdout=out, stderr=err))
    try:
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            p.kill()
    for index, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"w{index}.err").read_text()[-3000:]
    chief, other = (last_json((tmp_path / f"w{i}.out").read_text()) for i in range(2))
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["weights_sha256"] == other["weights_sha256"]
    assert chief["saved_model"] and other["saved_model"] is None  # only the chief exports
    assert Path(chief["saved_model"], "saved_model.pb").is_file()
    assert (tmp_path / "run" / "worker1" / "history.csv").is_file()


# ---- one run per directory; no crash window; never resume from what is not there ------------

QUICK_RUN = ["linear", "--limit", "600", "--epochs", "2", "--quiet"]


def _visible_versions(models: Path) -> list[str]:
    return sorted(p.name for p in (models / "linear").iterdir() if p.name != ".lock")


def test_two_same_name_runs_started_together_end_with_one_run_and_one_clear_line(real_mnist, tmp_path):
    """Both runs are told to die mid-export (as from kill -9): the one holding the name gets
    that far, the other stops at once; the rerun finishes the killed run without training it
    again, removes what the killed export left, and publishes exactly one version."""
    dirs = ["--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "models")]
    args = [sys.executable, "-m", "kerasdl.mnist", *QUICK_RUN, *dirs]
    env = {**os.environ, "KERASDL_FAULT": "export_written"}
    procs = [subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [-signal.SIGKILL, 2], [o[1][-1500:] for o in outs]
    winner, loser = (procs[0], outs[1]) if procs[0].returncode == -signal.SIGKILL else (procs[1], outs[0])
    errors = [line for line in loser[1].splitlines() if ": error: " in line]
    assert len(errors) == 1, loser[1][-2000:]
    assert f"is in use by another run (pid {winner.pid} on " in errors[0] and "--name" in errors[0], errors[0]
    assert "-m kerasdl.mnist linear --limit 600" in errors[0]  # the holder's command
    assert list((tmp_path / "models" / "linear").glob(".export-*")), "the kill should have left a partial export"

    again = run_module("kerasdl.mnist", *QUICK_RUN, *dirs)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = last_json(again.stdout)
    assert summary["resumed_from_epoch"] == 2  # trained already: evaluated and exported, not trained again
    assert [r["epoch"] for r in training.read_history(tmp_path / "run" / "history.csv")] == [0, 1]
    assert _visible_versions(tmp_path / "models") == ["1"]  # the leftover .export-* removed, one version
    assert not (tmp_path / "run" / "backup").exists()


class Killed(BaseException):
    """Stands for kill -9 in-process: no `except Exception` catches it."""


@pytest.mark.parametrize("fault", ["after_fit", "export_published", "before_summary"])
def test_a_run_killed_after_training_finishes_on_rerun_without_training_or_a_second_version(
        fault, real_mnist, tmp_path, monkeypatch):
    from kerasdl import artifacts, faults, mnist

    cfg = mnist.config_for("linear", limit=600, epochs=2, run_dir=tmp_path / "run", export_dir=tmp_path / "models")

    def die(point):
        if point == fault:
            raise Killed(point)

    monkeypatch.setattr(faults, "point", die)
    with pytest.raises(Killed):
        mnist.train(cfg, verbose=0)
    history = (tmp_path / "run" / "history.csv").read_bytes()
    assert (tmp_path / "run" / "backup" / "training_metadata.json").is_file(), "the resume state must survive"
    assert not (tmp_path / "run" / "summary.json").exists()
    monkeypatch.undo()

    summary = mnist.train(cfg, verbose=0)
    assert summary["resumed_from_epoch"] == 2
    assert (tmp_path / "run" / "history.csv").read_bytes() == history  # no epoch trained again
    assert _visible_versions(tmp_path / "models") == ["1"]
    version = tmp_path / "models" / "linear" / "1"
    assert json.loads((version / "model_card.json").read_text())["weights_sha256"] == summary["weights_sha256"]
    assert (tmp_path / "models" / "linear.keras").samefile(version / artifacts.KERAS_FILE)
    assert not (tmp_path / "run" / "backup").exists() and (tmp_path / "run" / "summary.json").is_file()


@pytest.mark.parametrize("damage", ["weights missing", "weights unreadable", "metadata unreadable"])
def test_a_backup_that_cannot_be_resumed_is_refused_not_restarted(damage, real_mnist, tmp_path):
    from kerasdl import mnist
    from kerasdl.errors import UsageError

    backup = tmp_path / "run" / "backup"
    backup.mkdir(parents=True)
    meta = {"epoch": 1, "batch": 0, "weights": "epoch-1.weights.h5"}
    (backup / "training_metadata.json").write_text("{\"epoch\": 1," if damage == "metadata unreadable"
                                                   else json.dumps(meta))
    if damage == "weights unreadable":
        (backup / "epoch-1.weights.h5").write_bytes(b"\x89HDF\r\n half a file")
    cfg = mnist.config_for("linear", limit=600, epochs=2, run_dir=tmp_path / "run", export_dir=tmp_path / "models")
    word = {"weights missing": "missing", "weights unreadable": "unreadable", "metadata unreadable": "metadata"}[damage]
    with pytest.raises(UsageError, match=rf"{backup}: cannot resume: .*{word}.*--restart"):
        mnist.train(cfg, verbose=0)
    assert not (tmp_path / "run" / "history.csv").exists()  # nothing trained
    assert not list((tmp_path / "models").glob("linear/[0-9]*"))
