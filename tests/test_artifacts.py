"""kerasdl.artifacts: export round trip, loading without kerasdl code, atomicity."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def _visible(path):
    return sorted(p.name for p in path.iterdir() if p.name != ".lock")


def _disk_full_half_way(self, path, *args, **kwargs):
    """model.save that writes half a file and then finds the disk full."""
    import errno

    Path(path).write_bytes(b"PK\x03\x04 half a zip")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fault", ["disk full half-way", "read-only export directory"])
def test_failed_export_keeps_the_previous_model(fault, tmp_path, trained_linear, monkeypatch):
    import errno
    import tempfile

    x = np.random.default_rng(2).random((3, 784), dtype="float32")
    first = artifacts.export(trained_linear, tmp_path, "linear")
    before = artifacts.serve(artifacts.load_saved_model(first.saved_model), x).numpy()
    keras_bytes = first.keras_model.read_bytes()

    other = models.compile_classifier(models.linear())
    if fault == "disk full half-way":
        monkeypatch.setattr(type(other), "save", _disk_full_half_way)
    else:  # as a read-only mount answers (root ignores chmod, so the refusal is injected where it lands)
        def read_only(*a, **k):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(UsageError) as error:
        artifacts.export(other, tmp_path, "linear")
    message = str(error.value)
    assert "\n" not in message and "version 1 is untouched" in message
    assert ("No space left" if fault == "disk full half-way" else "Read-only") in message

    after = artifacts.serve(artifacts.load_saved_model(tmp_path / "linear"), x).numpy()
    np.testing.assert_array_equal(before, after)
    assert first.keras_model.read_bytes() == keras_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linear", "linear.keras"]
    assert _visible(tmp_path / "linear") == ["1"], "a failed export left a version or temp dir"


def test_strays_and_leftovers_never_jam_an_export_and_the_keras_file_is_the_newest(tmp_path, trained_linear):
    """A numbered directory without a SavedModel is stepped over (never an endless loop); what a
    killed exporter left (.export-*, a half-linked .keras) is removed; <name>.keras is the newest
    version's own file."""
    first = artifacts.export(trained_linear, tmp_path, "linear")
    (tmp_path / "linear" / "2").mkdir()
    (tmp_path / "linear" / "2" / "variables").mkdir()  # a partial copy: not empty, no saved_model.pb
    (tmp_path / "linear" / ".export-killed").mkdir()
    (tmp_path / ".linear.keras.tmp-999").write_bytes(b"half")
    second = artifacts.export(trained_linear, tmp_path, "linear")
    assert (first.version, second.version) == (1, 3) and artifacts.versions(tmp_path / "linear") == [1, 3]
    assert _visible(tmp_path / "linear") == ["1", "2", "3"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert second.keras_model.samefile(second.saved_model / artifacts.KERAS_FILE)


def test_a_second_exporter_of_the_same_name_is_refused_while_the_first_holds_it(tmp_path, trained_linear):
    (tmp_path / "linear").mkdir()
    code = ("import sys, time; from kerasdl import locks; "  # the lock export takes, without TensorFlow's import
            "lock = locks.hold(sys.argv[1] + '/linear/.lock', 'x', 'y'); lock.__enter__(); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=rf"in use by another run \(pid {holder.pid} on .*--name"):
            artifacts.export(trained_linear, tmp_path, "linear")
    finally:
        holder.kill()
        holder.wait()
    assert artifacts.export(trained_linear, tmp_path, "linear").version == 1  # kill -9 left no stale lock


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
    assert _visible(tmp_path / "linear") == ["3", "4", "5"]
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
