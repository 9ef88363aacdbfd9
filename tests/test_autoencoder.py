"""kerasdl.autoencoder: shapes and round trips, and a short real run against PCA(2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import last_json, run_module
from kerasdl import artifacts, models


@pytest.mark.parametrize("arch", ["deep", "shallow"])
def test_encoder_then_decoder_is_the_full_model(arch):
    model = models.autoencoder(arch)
    x = np.random.default_rng(0).random((4, 784), dtype="float32")
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    codes = encoder.predict(x, verbose=0)
    assert codes.shape == (4, 2)
    np.testing.assert_allclose(decoder.predict(codes, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert model.output_shape == (None, 784)


@pytest.fixture(scope="module")
def short_run(real_mnist, tmp_path_factory):
    work = tmp_path_factory.mktemp("ae")
    proc = run_module("kerasdl.autoencoder", "--quiet", "--limit", 10000, "--epochs", 12, "--arch", "deep",
                      "--run-dir", work / "run", "--export-dir", work / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "" and len(proc.stdout.strip().splitlines()) == 1  # --quiet: the JSON line only
    return work, last_json(proc.stdout)


def test_short_run_beats_pca_on_reconstruction(short_run):
    _, summary = short_run
    deep, pca = summary["methods"]["deep"], summary["methods"]["pca"]
    assert deep["reconstruction_mse"] < pca["reconstruction_mse"]
    assert deep["knn_accuracy"] > 0.4  # 2-D codes that separate digits: chance is 0.1
    for png in summary["figures"].values():
        assert Path(png).stat().st_size > 20_000
    assert Path(summary["table"]).read_text().count("|") > 10


def test_exported_encoder_alone_reproduces_the_codes(short_run, real_mnist):
    work, summary = short_run
    paths = summary["saved_models"]["deep"]
    x = (np.load(real_mnist)["x_test"][:16].reshape(16, 784) / 255.0).astype("float32")
    encoder = artifacts.load_saved_model(paths["encoder"])
    decoder = artifacts.load_saved_model(paths["decoder"])
    full = artifacts.load_saved_model(paths["autoencoder"])
    codes = artifacts.serve(encoder, x).numpy()
    # the summary's reconstruction error is the exported model's, on the test images it names
    test = (np.load(real_mnist)["x_test"][:10000].reshape(-1, 784) / 255.0).astype("float32")
    mse = float(np.mean((artifacts.serve(full, test).numpy() - test) ** 2))
    assert mse == pytest.approx(summary["methods"]["deep"]["reconstruction_mse"], rel=1e-3)
    assert codes.shape == (16, 2)
    np.testing.assert_allclose(artifacts.serve(decoder, codes).numpy(), artifacts.serve(full, x).numpy(),
                               rtol=1e-4, atol=1e-5)
    import keras
    keras_encoder = keras.models.load_model(Path(paths["encoder"]).parent.with_suffix(".keras"))
    np.testing.assert_allclose(keras_encoder.predict(x, verbose=0), codes, rtol=1e-4, atol=1e-5)
