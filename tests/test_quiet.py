"""kerasdl.quiet: TensorFlow's start-up chatter stays out of a normal run; real errors do not."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_module
from kerasdl import quiet

CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795851840.595591    4029 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1795851840.596429    4029 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.",
    "E0000 00:00:1795851842.841836    4029 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1795866891.125120   25077 util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512. "
    "Falling back to the default Eigen-based implementation if present.",
]
REAL = [
    "E0000 00:00:1795851842.841836    4029 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_OUT_OF_MEMORY (2)",
    "E0000 00:00:1795851856.451108    4029 some_kernel.cc:99] Invalid argument: indices[3] = 12 is not in [0, 10)",
    "python -m kerasdl.predict: error: /x.png: no such file; pass PNG/JPEG images or .npy arrays",
    "Traceback (most recent call last):",
]


def test_the_filter_drops_known_notices_and_keeps_everything_else():
    assert all(quiet.NOISE.search(line) for line in CHATTER)
    assert not any(quiet.NOISE.search(line) for line in REAL)


def test_a_command_that_loads_tensorflow_prints_nothing_but_its_error(tmp_path):
    np.save(tmp_path / "digits.npy", np.zeros((2, 28, 28), "uint8"))
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    proc = run_module("kerasdl.predict", not_a_model, tmp_path / "digits.npy", env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"python -m kerasdl.predict: error: {not_a_model}: not a SavedModel")
    loud = run_module("kerasdl.predict", not_a_model, tmp_path / "digits.npy",
                      env={"KERASDL_TF_LOGS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert loud.returncode == 2 and "error: " in loud.stderr
    # KERASDL_TF_LOGS=1 shows everything again, whatever TF_CPP_MIN_LOG_LEVEL says: TensorFlow's start-up lines come back
    assert [line for line in loud.stderr.splitlines() if quiet.NOISE.search(line)], loud.stderr[-2000:]


def test_a_prediction_run_has_a_clean_stderr(tmp_path, small_models):
    np.save(tmp_path / "digits.npy", np.zeros((2, 28, 28), "uint8"))
    proc = run_module("kerasdl.predict", small_models / "cnn", tmp_path / "digits.npy")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""
    assert len(proc.stdout.strip().splitlines()) == 2


CLIS = ["kerasdl.mnist", "kerasdl.autoencoder", "kerasdl.theory", "kerasdl.toy", "kerasdl.report", "kerasdl.predict",
        "kerasdl.serve", "kerasdl.digits", "tuning", "bench/cnn_vs_reference.py", "bench/precision.py",
        "bench/serve_load.py", "bench/page_screenshot.py", "bench/preprocess_speed.py", "bench/kernels.py",
        "bench/fit_wait.py"]


@pytest.mark.parametrize("cli", CLIS)
def test_every_help_is_on_stdout_with_nothing_on_stderr(cli):
    """`--help` of every command and benchmark: usage on stdout, exit 0, and not one line of
    TensorFlow's start-up chatter on stderr even with TensorFlow's own logging turned up."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    argv = [sys.executable, cli, "--help"] if cli.endswith(".py") else [sys.executable, "-m", cli, "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ") and "--help" in proc.stdout
    assert proc.stderr == ""
