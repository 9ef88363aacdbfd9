"""Shared fixtures: the real MNIST file, a tiny synthetic MNIST, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"

if not os.environ.get("KERASDL_MNIST") and SHARED_MNIST.exists():
    os.environ["KERASDL_MNIST"] = str(SHARED_MNIST)


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    """Path of the real MNIST npz (KERASDL_MNIST or ../shared/data/mnist.npz)."""
    path = Path(os.environ.get("KERASDL_MNIST", ""))
    if not path.is_file():
        pytest.skip("real MNIST not available: set KERASDL_MNIST to mnist.npz")
    return path


def synthetic_mnist(n_train: int = 600, n_test: int = 200, seed: int = 0) -> dict:
    """A learnable fake MNIST: each class is a bright 6x6 square at its own position."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n).astype("uint8")
        x = rng.integers(0, 40, (n, 28, 28)).astype("uint8")
        for i, label in enumerate(y):
            r, c = divmod(int(label), 5)
            x[i, 4 + 10 * r: 10 + 10 * r, 2 + 5 * c: 7 + 5 * c] = 255
        return x, y

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    return dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch) -> Path:
    """A small learnable MNIST-shaped npz, pointed to by KERASDL_MNIST for this test."""
    path = tmp_path / "fake_mnist.npz"
    np.savez(path, **synthetic_mnist())
    monkeypatch.setenv("KERASDL_MNIST", str(path))
    return path


def run_module(module: str, *args, env: dict | None = None, cwd=None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m module args...` as a user would; returns the completed process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


def last_json(stdout: str) -> dict:
    """The JSON object on the last non-empty stdout line."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no stdout"
    return json.loads(lines[-1])
