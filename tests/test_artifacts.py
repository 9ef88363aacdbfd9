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
    assert [p.name for p in (tmp_path / "linear").iterdir()] == ["1"], "a failed export left a version or temp dir"


def test_loading_a_directory_that_is_not_a_saved_model_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not a SavedModel"):
        artifacts.load_saved_model(tmp_path)
    with pytest.raises(UsageError, match="no such SavedModel"):
        artifacts.load_saved_model(tmp_path / "missing")


def test_versions_are_numbered_pruned_and_readers_take_the_newest(tmp_path, trained_linear):
    """TF Serving's layout: name/1, name/2, ...; the newest 3 are kept; name/ resolves to the newest."""
    x = np.random.default_rng(3).random((2, 784), dtype="float32")
    outs = [artifacts.export(trained_linear, tmp_path, "linear", keep=3) for _ in range(5)]
    assert [o.version for o in outs] == [1, 2, 3, 4, 5]
    assert artifacts.versions(tmp_path / "linear") == [3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "linear").iterdir()) == ["3", "4", "5"]
    assert artifacts.resolve(tmp_path / "linear") == tmp_path / "linear" / "5"
    assert artifacts.resolve(tmp_path / "linear" / "4") == tmp_path / "linear" / "4"
    loaded = artifacts.load_saved_model(tmp_path / "linear")
    np.testing.assert_allclose(artifacts.serve(loaded, x).numpy(), trained_linear.predict(x, verbose=0), rtol=1e-5)


def test_an_unversioned_export_becomes_version_1(tmp_path, trained_linear):
    legacy = tmp_path / "linear"
    artifacts._export_saved_model(trained_linear, legacy)  # the layout before versioning
    assert artifacts.resolve(legacy) == legacy
    out = artifacts.export(trained_linear, tmp_path, "linear")
    assert out.version == 2 and artifacts.versions(legacy) == [1, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_reader_polling_during_re_exports_always_loads_a_complete_model(tmp_path, trained_linear):
    """While versions are written and pruned, every load of name/ (newest version) succeeds."""
    import threading

    import tensorflow as tf

    artifacts.export(trained_linear, tmp_path, "linear")
    done, loads, failures = threading.Event(), [], []

    def poll():
        while not done.is_set():
            try:
                path = artifacts.resolve(tmp_path / "linear")
                loaded = tf.saved_model.load(str(path))
                loaded.serve(tf.zeros((1, 784)))
                loads.append(path.name)
            except Exception as exc:  # noqa: BLE001 - any other failure is what this test looks for
                failures.append(repr(exc))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(4):  # versions 2..5; 1 and 2 are pruned (keep=3) while the reader reads newer ones
            artifacts.export(trained_linear, tmp_path, "linear")
    finally:
        done.set()
        reader.join(60)
    assert not failures, failures[:3]
    assert len(loads) >= 3 and len(set(loads)) >= 2, loads
