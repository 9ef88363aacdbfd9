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

# The kernels the commands run with (kerasdl.use_onednn), set before any test imports TensorFlow;
# the commands the tests start inherit it.
from kerasdl import use_onednn  # noqa: E402

use_onednn()


def under_ci() -> bool:
    """CI=true (as CI services and .ci/run set it): what a test needs must be there."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip a test whose requirement is missing; under CI fail it instead, in one line, so a run
    with a quarter of the suite skipped cannot pass."""
    if under_ci():
        pytest.fail(f"CI=true and {what}", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    """Path of the real MNIST npz (KERASDL_MNIST or ../shared/data/mnist.npz)."""
    path = Path(os.environ.get("KERASDL_MNIST", ""))
    if not path.is_file():
        missing(f"real MNIST not available at {str(path) or '(KERASDL_MNIST unset)'}: set KERASDL_MNIST to mnist.npz")
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


def train_small_models(export_dir: Path, mnist_path: Path, names=("linear", "mlp", "cnn", "autoencoder")) -> Path:
    """Classifiers and a 2-D autoencoder trained for seconds on real MNIST slices, exported the
    kerasdl way (versioned SavedModels); good enough to read most test digits."""
    import keras

    from kerasdl import artifacts, models

    raw = np.load(mnist_path)
    x = raw["x_train"][:6000].astype("float32") / 255.0
    y = raw["y_train"][:6000]
    keras.utils.set_random_seed(0)
    for name in names:
        if name == "autoencoder":
            auto = models.autoencoder("deep")
            auto.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy")
            auto.fit(x.reshape(-1, 784), x.reshape(-1, 784), epochs=4, batch_size=128, verbose=0)
            for part in ("encoder", "decoder"):
                artifacts.export(auto.get_layer(part), export_dir, part, keras_file=False)
            continue
        model = models.compile_classifier(models.build(name, **({"shift": 0} if name == "cnn" else {})), lr=2e-3)
        inputs = x[..., None] if name == "cnn" else x.reshape(-1, 784)
        model.fit(inputs, y, epochs=2 if name == "cnn" else 3, batch_size=64, verbose=0)
        artifacts.export(model, export_dir, name, keras_file=False)
    return export_dir


@pytest.fixture(scope="session")
def small_models(tmp_path_factory, real_mnist) -> Path:
    """saved_models-like directory with linear, mlp, cnn, encoder and decoder (trained once per session)."""
    return train_small_models(tmp_path_factory.mktemp("saved_models"), real_mnist)


def free_ports(n: int) -> list[int]:
    """`n` different ports free right now, for TensorFlow's cluster specs and Keras Tuner's oracle
    (they need ports named in advance); the server's tests use `kerasdl.serve --port 0` instead.
    All `n` are held open together while chosen, so the kernel cannot hand out one twice."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """One port free right now (free_ports)."""
    return free_ports(1)[0]


class ServerProcess:
    """`python -m kerasdl.serve` in a subprocess on a free port; `url` once it answers."""

    def __init__(self, models_dir: Path, *extra: str):
        import re
        import tempfile
        import time
        import urllib.request

        log_dir = Path(tempfile.mkdtemp(prefix="kerasdl-serve-"))  # never inside a repository
        self.log = open(log_dir / "server.log", "w+")
        # --port 0: the kernel picks a free port as the server binds it (no check-then-bind race);
        # the server names it in its "serving on" line.
        self.proc = subprocess.Popen([sys.executable, "-m", "kerasdl.serve", "--models", str(models_dir),
                                      "--port", "0", *extra], cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)
        self.port, self.url = None, None
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()[-3000:]}")
            if self.url is None:
                bound = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", self.output())
                if bound:
                    self.port = int(bound.group(1))
                    self.url = f"http://127.0.0.1:{self.port}"
            try:
                if self.url is not None:
                    urllib.request.urlopen(self.url + "/", timeout=1).read()
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not start within 120 s")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def server(small_models):
    """One server over the small models for the whole session."""
    proc = ServerProcess(small_models)
    yield proc
    proc.stop()
