"""kerasdl.data: MNIST validation on good and broken files, and the train/val/test split."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_mnist
from kerasdl import data


def save(tmp_path, name="mnist.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_mnist_reads_the_file_named_by_the_environment(fake_mnist):
    (xtr, ytr), (xte, yte) = data.load_mnist()
    assert xtr.shape == (600, 28, 28) and xte.shape == (200, 28, 28)
    assert xtr.dtype == np.uint8 and ytr.max() <= 9 and len(yte) == 200


def broken_files(tmp_path):
    good = synthetic_mnist(50, 20)
    cases = {}
    cases["missing"] = (tmp_path / "nope.npz", "no such file")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    cases["empty"] = (empty, "empty file")
    whole = save(tmp_path, "whole.npz", **good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    cases["truncated"] = (truncated, "not a readable npz")
    cases["wrong keys"] = (save(tmp_path, "keys.npz", a=good["x_train"]), "missing key")
    cases["wrong shape"] = (save(tmp_path, "shape.npz", **{**good, "x_train": good["x_train"][:, :27]}),
                            "expected (N, 28, 28)")
    cases["wrong dtype"] = (save(tmp_path, "dtype.npz", **{**good, "x_test": good["x_test"].astype("float64")}),
                            "expected uint8")
    cases["labels out of range"] = (save(tmp_path, "labels.npz", **{**good, "y_train": good["y_train"] + 5}),
                                    "expected 0..9")
    cases["mismatched lengths"] = (save(tmp_path, "len.npz", **{**good, "y_test": good["y_test"][:-1]}),
                                   "labels")
    return cases


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "wrong keys", "wrong shape", "wrong dtype",
                                  "labels out of range", "mismatched lengths"])
def test_broken_files_give_one_clear_error_naming_the_file_and_the_fix(tmp_path, monkeypatch, case):
    path, expected = broken_files(tmp_path)[case]
    monkeypatch.setenv("KERASDL_MNIST", str(path))
    with pytest.raises(data.MnistDataError) as err:
        data.load_mnist()
    message = str(err.value)
    assert str(path) in message and expected in message
    assert "KERASDL_MNIST" in message and "\n" not in message


def test_the_keras_cache_is_read_with_numpy_when_no_variable_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("KERASDL_MNIST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / ".keras" / "datasets"
    cache.mkdir(parents=True)
    save(cache, **synthetic_mnist(30, 10))
    assert data.mnist_source() == cache / "mnist.npz"
    (xtr, _), _ = data.load_mnist()
    assert len(xtr) == 30


def test_split_carves_validation_from_train_and_scales_to_unit_floats(fake_mnist):
    split = data.mnist_split("flat", validation_size=100)
    assert split.x_train.shape == (500, 784) and split.x_val.shape == (100, 784)
    assert split.x_test.shape == (200, 784)
    assert split.x_train.dtype == np.float32 and 0.0 <= split.x_train.min() and split.x_train.max() == 1.0
    raw = np.load(fake_mnist)
    # validation is the tail of the training set; the test set is untouched
    np.testing.assert_array_equal(split.y_val, raw["y_train"][500:])
    np.testing.assert_array_equal(split.y_test, raw["y_test"])


def test_split_image_layout_limit_and_default_validation(fake_mnist):
    split = data.mnist_split("image", limit=300)
    assert split.x_train.shape == (270, 28, 28, 1) and split.x_val.shape == (30, 28, 28, 1)
    assert split.x_test.shape == (200, 28, 28, 1)  # the fake test set has only 200
    fraction = data.mnist_split("flat", validation_size=0.25)
    assert len(fraction.x_val) == 150


def test_validation_size_that_leaves_nothing_is_a_usage_error(fake_mnist):
    with pytest.raises(data.UsageError, match="--validation-size"):
        data.mnist_split("flat", validation_size=600)


def test_the_real_mnist_is_the_genuine_set(real_mnist):
    (xtr, ytr), (xte, yte) = data.load_mnist()
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert np.bincount(ytr).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert yte[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(xtr.mean() - 33.3184) < 1e-3
