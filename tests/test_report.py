"""kerasdl.report --quick end to end, and the benchmark's --quick mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, last_json, run_module

SECTIONS = ["## 1. Backprop facts", "## 2.4 Toy convnet vs linear model", "## 2.5.1-2.5.3 MNIST classifiers",
            "## 2.5.4 Learning rate and depth (Keras Tuner)", "## 2.6 Autoencoder vs PCA(2)"]


@pytest.fixture(scope="module")
def quick_report(real_mnist, tmp_path_factory):
    work = tmp_path_factory.mktemp("report")
    proc = run_module("kerasdl.report", "--quick", "--runs", work / "runs", "--out", work / "reports", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, last_json(proc.stdout), proc


def test_quick_report_has_every_section_figure_and_verdict(quick_report):
    work, summary, proc = quick_report
    assert summary["failed"] == []
    text = (work / "reports" / "REPORT.md").read_text()
    for heading in SECTIONS:
        assert heading in text
    assert "Not available" not in text and "could not be evaluated" not in text and "not evaluated" not in text
    assert summary["not_evaluated"] == []
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) >= 10
    for rel in images:  # copied beside the report, so --out docs/results is self-contained
        assert rel.startswith("figures/") and (work / "reports" / rel).is_file(), rel
    assert summary["serve"] == f"python -m kerasdl.serve --models {work / 'runs' / 'saved_models'}"
    assert summary["serve"] in text and (work / "runs" / "saved_models" / "cnn").is_dir()
    verdicts = re.findall(r"\| \*\*([^*]+)\*\* \|$", text, flags=re.M)
    assert len(verdicts) >= 15
    assert set(verdicts) <= {"holds", "partly", "does not hold"}
    assert "SGD stage (" in text  # the optimizer stage's curves quoted in lr_1_collapses' evidence
    assert "[1/11] theory: running" in proc.stderr  # a progress line per stage


def test_second_run_reuses_results(quick_report):
    work, first, _ = quick_report
    proc = run_module("kerasdl.report", "--quick", "--runs", work / "runs", "--out", work / "reports2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = last_json(proc.stdout)["stages"]
    assert all(state.startswith("reused ") for state in stages.values()), stages
    assert "limit=1500" in stages["cnn"]  # says which config it reused


def test_fresh_restarts_classifiers_and_reruns_the_tuner_searches(tmp_path):
    from kerasdl import report

    for fresh in (False, True):
        by_name = {stage.name: stage for stage in report.stages(tmp_path, quick=False, fresh=fresh)}
        assert len(by_name) == 11 and all(stage.config is not None for stage in by_name.values())
        # without overwrite, Keras Tuner reloads its finished trials and a --fresh report would rerun nothing
        assert by_name["tuning_lr"].config.overwrite is fresh and by_name["tuning_depth"].config.overwrite is fresh
        assert by_name["tuning_lr"].config.epochs == 50  # the write-up's budget, not a shortened one
        assert all(by_name[k].config.restart is fresh for k in ("linear", "mlp", "cnn", "mlp_sgd", "mlp_sigmoid"))


def test_a_failing_stage_is_marked_and_the_rest_still_reported(quick_report, tmp_path):
    work, _, _ = quick_report
    broken = tmp_path / "runs"
    shutil.copytree(work / "runs", broken)
    (broken / "toy" / "summary.json").unlink()
    # make the toy stage fail: its run directory is a file
    shutil.rmtree(broken / "toy")
    (broken / "toy").write_text("not a directory")
    proc = run_module("kerasdl.report", "--quick", "--runs", broken, "--out", tmp_path / "reports")
    assert proc.returncode == 1
    summary = last_json(proc.stdout)
    assert summary["failed"] == ["toy"]
    text = (tmp_path / "reports" / "REPORT.md").read_text()
    assert "FAILED" in text and "## 2.6 Autoencoder vs PCA(2)" in text and "**holds**" in text
    # the failed stage's claims say "not evaluated", with why; never "does not hold"
    toy_section = text.split("## 2.4")[1].split("## 2.5")[0]
    assert "**not evaluated**" in toy_section and "stage toy: FAILED" in toy_section
    assert "does not hold" not in toy_section
    assert "linear_fails_nonlinear" not in summary["not_evaluated"] and "linear fails nonlinear" in summary["not_evaluated"]


def test_stages_run_side_by_side_in_workers_with_the_same_results(quick_report, tmp_path):
    work, first, _ = quick_report
    runs = tmp_path / "runs"
    shutil.copytree(work / "runs", runs)
    (runs / "linear" / "summary.json").unlink()  # a short stage to run again, the rest reused
    shutil.rmtree(runs / "toy")
    (runs / "toy").write_text("not a directory")  # and one that fails inside its worker
    proc = run_module("kerasdl.report", "--quick", "--jobs", "2", "--runs", runs, "--out", tmp_path / "reports")
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    assert summary["failed"] == ["toy"]
    assert "see " in summary["stages"]["toy"] and str(runs / "logs" / "toy.log") in summary["stages"]["toy"]
    assert "Traceback" in (runs / "logs" / "toy.log").read_text()  # the worker's own output, kept
    assert list(summary["stages"]) == list(first["stages"])  # listed in the write-up's order, not finishing order
    assert summary["stages"]["linear"].startswith("ran now"), summary["stages"]["linear"]
    assert re.search(r"\] linear: running in a worker, \d+ TensorFlow thread", proc.stderr), proc.stderr[-3000:]
    again = json.loads((runs / "linear" / "summary.json").read_text())
    before = json.loads((work / "runs" / "linear" / "summary.json").read_text())
    # one thread instead of two may round differently, never differ in meaning
    assert again["test_accuracy"] == pytest.approx(before["test_accuracy"], abs=0.01)
    assert summary["stages"]["cnn"].startswith("reused")
    if os.environ.get("KERASDL_ONEDNN") == os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1":  # kerasdl's choice, not the user's
        on = "oneDNN custom operations are on"  # TensorFlow's own line at start-up
        assert on in (runs / "logs" / "linear.log").read_text()
        assert on not in (runs / "logs" / "toy.log").read_text()  # the toy stage's worker runs Eigen's kernels


def test_a_corrupt_summary_is_rerun_not_fatal(tmp_path):
    from kerasdl import mnist, report
    from kerasdl.summary import config_json

    cfg = mnist.config_for("linear", run_dir=tmp_path / "linear")
    path = tmp_path / "linear" / "summary.json"
    path.parent.mkdir()
    path.write_text('{"test_accuracy": 0.92, "config": {')  # cut off mid-write by a crash or a full disk
    full = {"test_accuracy": 0.925, "epochs": 10, "train_seconds": 3.0, "train_images": 55000,
            "config": json.loads(json.dumps(config_json(cfg)))}
    stage = report.Stage("linear", path, lambda: full, cfg)
    results, status = report.run_stages([stage], fresh=False)
    assert status["linear"].startswith("ran now") and results["linear"] == full


def test_a_second_report_on_the_same_runs_is_refused_with_one_line(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from kerasdl import locks; "
                               "l = locks.hold(sys.argv[1] + '/.report.lock', 'x', 'y'); l.__enter__(); "
                               "print('held', flush=True); time.sleep(60)", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_module("kerasdl.report", "--quick", "--runs", tmp_path, "--out", tmp_path / "out", timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"pid {holder.pid}" in errors[0] and "--runs" in errors[0], proc.stderr[-2000:]
    assert not (tmp_path / "theory").exists()  # nothing ran


def test_benchmark_quick_mode_writes_json_and_table(real_mnist, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "cnn_vs_reference.py"), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "cnn_vs_reference.json").read_text())
    for side in ("reference", "ours"):
        row = result[side]
        assert row["train_seconds"] > 0 and 0 < row["test_accuracy"] <= 1
        assert row["images_per_second_batch1000"] > 0 and row["latency_ms_median"] > 0
    ratio = result["ours_over_reference"]
    assert ratio["train_seconds"] == pytest.approx(result["ours"]["train_seconds"] / result["reference"]["train_seconds"])
    assert ratio["test_accuracy"] == pytest.approx(result["ours"]["test_accuracy"] - result["reference"]["test_accuracy"])
    assert result["ours"]["saved_model"].rstrip("/").split("/")[-1].isdigit()  # a versioned export
    assert "ours / reference" in (tmp_path / "cnn_vs_reference.md").read_text()
    # which kernels the ratio was measured with: the commands' choice (kerasdl.use_onednn), said in words
    assert result["onednn"] is (os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1")
    assert f"oneDNN kernels {'on' if result['onednn'] else 'off'}" in result["machine"]


def test_a_summary_from_another_config_is_rerun_not_reused(tmp_path):
    """`python -m kerasdl.mnist cnn --epochs 1` left in runs/cnn must not stand in for the report's cnn."""
    from kerasdl import mnist, report
    from kerasdl.errors import UsageError
    from kerasdl.summary import config_json

    cfg = mnist.config_for("cnn", run_dir=tmp_path / "cnn")
    path = tmp_path / "cnn" / "summary.json"
    path.parent.mkdir()
    one_epoch = {"test_accuracy": 0.97, "config": config_json(mnist.config_for("cnn", epochs=1))}
    path.write_text(json.dumps(one_epoch))
    ran = []
    full = {"test_accuracy": 0.995, "config": json.loads(json.dumps(config_json(cfg)))}
    stage = report.Stage("cnn", path, lambda: ran.append("cnn") or full, cfg)

    with pytest.raises(UsageError, match=r"stage cnn: .* another config \(epochs: wanted 9, found 1\)"):
        report.run_stages([stage], fresh=False, reuse_only=True)
    assert ran == []

    results, status = report.run_stages([stage], fresh=False)
    assert ran == ["cnn"] and results["cnn"]["test_accuracy"] == 0.995
    assert status["cnn"].startswith("ran now") and "epochs=9" in status["cnn"]

    # the same experiment written elsewhere (other run_dir/export_dir) is the same result: reused
    path.write_text(json.dumps({**full, "config": {**full["config"], "run_dir": "runs/cnn", "export_dir": "x"}}))
    results, status = report.run_stages([stage], fresh=False)
    assert ran == ["cnn"] and status["cnn"].startswith("reused ") and "epochs=9" in status["cnn"]


def test_report_carries_its_figures_provenance_and_the_serve_command(tmp_path):
    """REPORT.md links copies of its figures under <out>/figures/ (runs/ is git-ignored), says when,
    where and from which commit and command its numbers came, and how to serve the models it trained."""
    from kerasdl import report

    runs, out = tmp_path / "runs", tmp_path / "docs" / "results"
    results = {}
    for name in ("linear", "mlp", "cnn"):  # three figures with the same file name, history.png
        (runs / name).mkdir(parents=True)
        (runs / name / "history.png").write_bytes(name.encode())
        results[name] = {"history_plot": str(runs / name / "history.png"), "test_accuracy": 0.99487, "epochs": 9,
                         "train_seconds": 120.2}
    (runs / "saved_models" / "cnn" / "1").mkdir(parents=True)
    out.mkdir(parents=True)
    path = report.write_report(results, {k: "ran now" for k in results}, out, quick=False, seconds=1.0,
                               command="python -m kerasdl.report --out docs/results",
                               saved_models=runs / "saved_models", commit="0123abcd (read at the start)")
    text = path.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images == ["figures/linear-history.png", "figures/mlp-history.png", "figures/cnn-history.png"]
    assert [(out / rel).read_bytes() for rel in images] == [b"linear", b"mlp", b"cnn"]
    assert "command `python -m kerasdl.report --out docs/results`" in text
    assert "code at commit 0123abcd (read at the start);" in text
    assert re.search(r"Written \d{4}-\d\d-\d\dT", text) and " cores, " in text
    assert f"python -m kerasdl.serve --models {runs / 'saved_models'}\n" in text and "(`cnn`)" in text
    assert "## Headline results" in text and "| cnn: test accuracy | 99.49% after 9 epochs, 120 s of training |" in text
