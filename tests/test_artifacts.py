"""kerasdl.artifacts: export round trip, loading without kerasdl code, atomicity."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kerasdl import artifacts, models
from kerasdl.errors import UsageError


@pytest.fixture
def trained_linear():
    model = models.compile_classifier(models.linear())
    rng = np.random.default_rng(0)
    model.fit(rng.random((64, 784), dtype="float32"), rng.integers(0, 10, 64), epochs=1, verbose=0)
    return model


def test_export_round_trip_gives_the_same_predictions(tmp_path, trained_linear):
    x = np.random.default_rng(1).random((5, 784), dtype="float32")
    expected = trained_linear.predict(x, verbose=0)
    out = artifacts.export(trained_linear, tmp_path, "linear")
    assert (out.saved_model / "saved_model.pb").is_file() and out.keras_model.is_file()
    loaded = artifacts.load_saved_model(out.saved_model)
    np.testing.assert_allclose(artifacts.serve(loaded, x).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert artifacts.serving_input_shape(loaded) == (784,)
    import keras
    np.testing.assert_allclose(keras.models.load_model(out.keras_model).predict(x, verbose=0), expected, rtol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_exported_convnet_serves_in_inference_mode(tmp_path):
    """No shift augmentation or dropout at serving time: the same image always gets the same
    probabilities, equal to model.predict's, in the SavedModel and through TFSMLayer."""
    import keras

    model = models.compile_classifier(models.cnn())
    x = np.random.default_rng(2).random((8, 28, 28, 1), dtype="float32")
    expected = model.predict(x, verbose=0)
    out = artifacts.export(model, tmp_path, "cnn")
    loaded = artifacts.load_saved_model(out.saved_model)
    for _ in range(3):
        np.testing.assert_allclose(artifacts.serve(loaded, x).numpy(), expected, rtol=1e-5, atol=1e-6)
    served = loaded.signatures["serving_default"](inputs=x)
    np.testing.assert_allclose(next(iter(served.values())).numpy(), expected, rtol=1e-5, atol=1e-6)
    layer = keras.layers.TFSMLayer(str(out.saved_model), call_endpoint="serve")
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_saved_model_loads_in_a_process_that_never_imports_kerasdl(tmp_path, trained_linear):
    out = artifacts.export(trained_linear, tmp_path, "linear")
    code = ("import sys, numpy as np, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]); "
            "p = m.serve(np.zeros((2, 784), 'float32')).numpy(); "
            "assert 'kerasdl' not in sys.modules; print(p.shape)")
    proc = subprocess.run([sys.executable, "-c", code, str(out.saved_model)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("(2, 10)")


def test_failed_export_keeps_the_previous_model(tmp_path, trained_linear, monkeypatch):
    x = np.random.default_rng(2).random((3, 784), dtype="float32")
    first = artifacts.export(trained_linear, tmp_path, "linear")
    before = artifacts.serve(artifacts.load_saved_model(first.saved_model), x).numpy()
    keras_bytes = first.keras_model.read_bytes()

    other = models.compile_classifier(models.linear())
    monkeypatch.setattr(type(other), "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        artifacts.export(other, tmp_path, "linear")

    after = artifacts.serve(artifacts.load_saved_model(first.saved_model), x).numpy()
    np.testing.assert_array_equal(before, after)
    assert first.keras_model.read_bytes() == keras_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linear", "linear.keras"]


def test_loading_a_directory_that_is_not_a_saved_model_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not a SavedModel"):
        artifacts.load_saved_model(tmp_path)
    with pytest.raises(UsageError, match="no such SavedModel"):
        artifacts.load_saved_model(tmp_path / "missing")
