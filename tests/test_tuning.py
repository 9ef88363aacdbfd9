"""tuning: real Keras Tuner searches on a small slice of MNIST, resumed and distributed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, free_port, last_json, run_module

LR_ARGS = ["lr", "--lrs", "0.001", "0.1", "10", "--limit", "2000", "--epochs", "2", "--units", "64"]


@pytest.fixture(scope="module")
def lr_search(real_mnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("tuning")
    args = [*LR_ARGS, "--run-root", root / "runs", "--export-dir", root / "models"]
    proc = run_module("tuning", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = [line for line in proc.stderr.splitlines() if line.startswith("tuning lr: trial ")]
    assert [t.split(" (")[0] for t in trials] == [f"tuning lr: trial {n} of 3" for n in (1, 2, 3)], proc.stderr[-3000:]
    assert "best so far" in trials[-1] and "left" in trials[-1]
    assert "Search: Running Trial #3" in proc.stderr  # Keras Tuner's own lines, on stderr
    assert len(proc.stdout.strip().splitlines()) == 1
    return root, args, last_json(proc.stdout)


def test_lr_search_runs_every_trial_and_flags_lr_10(lr_search):
    root, _, summary = lr_search
    trials = {t["hyperparameters"]["lr"]: t for t in summary["trials"]}
    assert sorted(trials) == [0.001, 0.1, 10.0]
    ten = trials[10.0]
    assert ten["diverged"] or ten["at_chance"], ten
    assert ten["final"]["val_accuracy"] is None or ten["final"]["val_accuracy"] < 0.3
    # 2 epochs of 15 steps on 1,800 images: measured 0.76 and 0.8 on two runs here; chance is 0.1
    assert trials[0.001]["best"]["val_accuracy"] > 0.6
    for t in summary["trials"]:
        header = Path(t["history_csv"]).read_text().splitlines()[0]
        assert "test_accuracy" in header and "val_accuracy" in header
        assert t["seconds_per_epoch"] > 0 and t["params"] == 784 * 64 + 64 + 64 * 10 + 10
    assert summary["best_hyperparameters"]["lr"] == 0.001  # best by validation accuracy
    # results ranked by the objective, written as markdown and CSV; figures exist
    md = Path(summary["table_md"]).read_text().splitlines()
    assert md[2].startswith("| 1 | 0.001 |")
    assert len(Path(summary["table_csv"]).read_text().splitlines()) == 4
    assert Path(summary["figures"]["curves"]).stat().st_size > 20_000
    assert Path(summary["saved_model"], "saved_model.pb").is_file()


def test_rerun_without_overwrite_does_not_redo_finished_trials(lr_search):
    root, args, first = lr_search
    stamps = {t["trial_id"]: Path(t["history_csv"]).stat().st_mtime_ns for t in first["trials"]}
    proc = run_module("tuning", *args, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "" and len(proc.stdout.strip().splitlines()) == 1
    again = last_json(proc.stdout)
    assert {t["trial_id"] for t in again["trials"]} == set(stamps)
    assert {t["trial_id"]: Path(t["history_csv"]).stat().st_mtime_ns for t in again["trials"]} == stamps
    assert again["seconds"] < first["seconds"]


def test_depth_search_records_accuracy_params_and_time(real_mnist, tmp_path):
    proc = run_module("tuning", "depth", "--depths", "1", "2", "--limit", "1500", "--epochs", "2", "--units", "32",
                      "--run-root", tmp_path / "runs", "--export-dir", tmp_path / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    rows = {t["hyperparameters"]["hidden_layers"]: t for t in summary["trials"]}
    assert rows[2]["params"] == rows[1]["params"] + 32 * 32 + 32
    assert all(r["final"]["test_accuracy"] > 0.3 for r in rows.values())  # chance is 0.1
    assert Path(summary["figures"]["depth"]).stat().st_size > 10_000


def test_chief_and_two_workers_split_the_trials_with_the_results_of_one_process(real_mnist, tmp_path):
    port = free_port()
    args = [sys.executable, "-m", "tuning", "lr", "--lrs", "0.0001", "0.001", "0.01", "0.1", "--limit", "1000",
            "--epochs", "2", "--units", "32", "--run-root", str(tmp_path / "runs"),
            "--export-dir", str(tmp_path / "models")]
    base = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    logs = {name: (open(tmp_path / f"{name}.out", "w+"), open(tmp_path / f"{name}.err", "w+"))
            for name in ("chief", "tuner0", "tuner1")}
    procs = {name: subprocess.Popen(args, env={**base, "KERASTUNER_TUNER_ID": name}, cwd=ROOT,
                                    stdout=out, stderr=err, text=True)
             for name, (out, err) in logs.items()}
    try:
        for p in procs.values():
            p.wait(timeout=400)
    finally:
        for p in procs.values():
            p.kill()
    outs = {name: ((tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text()) for name in logs}
    for name, p in procs.items():
        assert p.returncode == 0, (name, outs[name][1][-3000:])
    chief = last_json(outs["chief"][0])
    assert len(chief["trials"]) == 4
    workers = [json.loads(p.read_text())["tuner_id"] for p in (tmp_path / "runs" / "lr" / "trials").glob("*/trial.json")]
    assert len(workers) == 4
    assert set(workers) == {"tuner0", "tuner1"}, workers  # both workers ran trials; the chief ran none
    assert all(last_json(outs[w][0])["role"] == "worker" for w in ("tuner0", "tuner1"))
    # the same search in one process: every trial's history identical, whichever worker ran it
    alone = subprocess.run([*args[:args.index("--run-root")], "--run-root", str(tmp_path / "alone"),
                            "--export-dir", str(tmp_path / "models_alone")], cwd=ROOT, capture_output=True,
                           text=True, timeout=400)
    assert alone.returncode == 0, alone.stderr[-3000:]
    split_trials = sorted((tmp_path / "runs" / "lr" / "trials").glob("*/history.csv"))
    assert [p.parent.name for p in split_trials] == ["lr=0.0001", "lr=0.001", "lr=0.01", "lr=0.1"]
    for history in split_trials:
        same = tmp_path / "alone" / "lr" / "trials" / history.parent.name / "history.csv"
        assert history.read_text() == same.read_text(), history.parent.name


def test_hypermodel_fit_passes_search_keywords_on_to_model_fit(fake_mnist, tmp_path):
    """tuner.search(..., class_weight=...) reaches model.fit: with every class weighted 0 the loss is 0
    and no weight moves; without it they do."""
    import keras_tuner as kt
    import numpy as np

    from kerasdl import data
    from tuning.search import MLPHyperModel, SearchConfig

    split = data.mnist_split("flat", validation_size=100)
    cfg = SearchConfig(kind="lr", lrs=(1e-2,), units=16, run_root=tmp_path)
    hypermodel = MLPHyperModel(cfg, test=(split.x_test, split.y_test))
    moved = {}
    for name, extra in (("plain", {}), ("weighted", {"class_weight": {c: 0.0 for c in range(10)}})):
        hp = kt.HyperParameters()
        model = hypermodel.build(hp)
        before = [w.copy() for w in model.get_weights()]
        hypermodel.fit(hp, model, split.x_train, split.y_train, validation_data=(split.x_val, split.y_val),
                       epochs=1, batch_size=64, **extra)
        moved[name] = max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), before))
    assert moved["plain"] > 1e-3 and moved["weighted"] == 0.0, moved
