"""Progress on every long run: on stderr, in Keras' own formats; --quiet silences it; stdout keeps the JSON."""

from __future__ import annotations

import contextlib
import json

import pytest

from conftest import run_module

# (command, arguments, a progress line that must appear); the other CLIs are checked in their own tests
CASES = {
    "mnist": (["kerasdl.mnist", "linear", "--limit", 600, "--epochs", 2], "val_accuracy"),
    "autoencoder": (["kerasdl.autoencoder", "--limit", 600, "--epochs", 1, "--arch", "shallow"],
                    "autoencoder: training the shallow autoencoder for 1 epochs"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_progress_goes_to_stderr_and_the_json_stays_alone_on_stdout(name, real_mnist, tmp_path):
    args, marker = CASES[name]
    dirs = ["--run-dir", tmp_path / "run", "--export-dir", tmp_path / "models"]
    proc = run_module(*args, *dirs)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker in proc.stderr
    if name == "mnist":
        assert proc.stderr.count("val_accuracy") == 2  # one Keras progress line per epoch
    (line,) = proc.stdout.strip().splitlines()
    assert isinstance(json.loads(line), dict)


@pytest.mark.parametrize("args", [["kerasdl.theory", "--steps", 2, "--mlp-images", 100, "--mlp-units", 8,
                                   "--shared-units", 8, "--shared-epochs", 1, "--shared-seeds", 1,
                                   "--shared-images", 300, "--contrast-epochs", 1, "--contrast-seeds", 1],
                                  ["kerasdl.toy", "--functions", "f1", "--seeds", 1, "--iterations", 20]],
                         ids=["theory", "toy"])
def test_quiet_prints_nothing_but_the_json(args, real_mnist, tmp_path):
    proc = run_module(*args, "--run-dir", tmp_path, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""
    (line,) = proc.stdout.strip().splitlines()
    assert isinstance(json.loads(line), dict)


@contextlib.contextmanager
def report_lines():
    """The report's progress lines (its logger's messages) while the block runs."""
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    log = logging.getLogger("kerasdl.report")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield records
    finally:
        log.removeHandler(handler)


def test_report_progress_says_elapsed_and_time_left(tmp_path):
    """A stage's line carries its last run's duration and an estimate of what is left; stages
    never timed here make the estimate a lower bound, and with none timed it says so."""
    from kerasdl import report

    calls = []
    toy = report.Stage("toy", tmp_path / "toy" / "summary.json", lambda: calls.append("toy") or {"config": {}})
    mlp = report.Stage("mlp", tmp_path / "mlp" / "summary.json", lambda: calls.append("mlp") or {"config": {}})
    timings = tmp_path / "report_timings.json"
    timings.write_text(json.dumps({"toy": 125.0}))
    with report_lines() as records:
        report.run_stages([toy, mlp], fresh=True, timings_path=timings)
    assert calls == ["toy", "mlp"]
    assert records[0].startswith("[1/2] toy: running (last run took 2 min 05 s;")
    assert records[0].endswith("at least 2 min 05 s left (1 stage never timed here))"), records[0]
    assert records[1].startswith("[1/2] toy: done in ") and "time left unknown" in records[1], records[1]
    assert records[2].startswith("[2/2] mlp: running (never timed here;") and "time left unknown" in records[2]
    assert records[3].startswith("[2/2] mlp: done in ") and records[3].endswith("nothing left to run)")
    assert set(json.loads(timings.read_text())) == {"toy", "mlp"}
    with report_lines() as records:  # the next run has both timings: a plain estimate
        report.run_stages([toy, mlp], fresh=True, timings_path=timings)
    assert "about " in records[0] and "never timed" not in records[0] and "at least" not in records[0]


def test_a_first_full_report_estimates_from_the_reference_run_and_says_so(tmp_path):
    """No timings of its own yet: the estimate comes from the 2-core reference run, labelled as such."""
    from kerasdl import report

    assert set(report.REFERENCE_TIMINGS) == {s.name for s in report.stages(tmp_path, quick=False, fresh=True)}
    toy = report.Stage("toy", tmp_path / "toy" / "summary.json", lambda: {"config": {}})
    mlp = report.Stage("mlp", tmp_path / "mlp" / "summary.json", lambda: {"config": {}})
    timings = tmp_path / "report_timings.json"
    with report_lines() as records:
        report.run_stages([toy, mlp], fresh=True, timings_path=timings, reference={"toy": 60.0, "mlp": 30.0})
    assert records[0].startswith("[1/2] toy: running (about 1 min 00 s on a 2-core reference run;"), records[0]
    assert "about 1 min 30 s left (a 2-core reference run's times)" in records[0]
    assert "about 30 s left (a 2-core reference run's times)" in records[1]  # mlp: still the reference's
    assert records[3].endswith("nothing left to run)")
    timings.write_text(json.dumps({"toy": 100.0}))  # toy timed here, mlp not yet: partly borrowed
    with report_lines() as records:
        report.run_stages([toy, mlp], fresh=True, timings_path=timings, reference={"toy": 60.0, "mlp": 30.0})
    assert "about 2 min 10 s left (partly a 2-core reference run's times)" in records[0], records[0]
