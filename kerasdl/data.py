"""MNIST loading, validation and preprocessing; the toy-function data of section 2.4.

MNIST comes from, in order: the file named by $KERASDL_MNIST, the Keras cache
(~/.keras/datasets/mnist.npz, read with numpy so Keras' hash check cannot trigger a
download), else `keras.datasets.mnist.load_data()` (a download).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasdl.errors import UsageError

MNIST_ENV = "KERASDL_MNIST"
KERAS_CACHE = Path("~/.keras/datasets/mnist.npz")
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
FIX_HINT = (
    f"set {MNIST_ENV} to a valid mnist.npz (keys x_train, y_train, x_test, y_test), "
    "or go online once so Keras can download it"
)


class MnistDataError(UsageError):
    """The MNIST file is missing or is not a valid MNIST npz."""


def validate_mnist(arrays: dict, source: str) -> None:
    """Raise MnistDataError naming `source` unless `arrays` is a well-formed MNIST split."""

    def fail(what: str):
        raise MnistDataError(f"{source}: {what}; {FIX_HINT}")

    missing = [k for k in MNIST_KEYS if k not in arrays]
    if missing:
        fail(f"missing key(s) {', '.join(missing)} (found {', '.join(sorted(arrays)) or 'none'})")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.shape[0] == 0:
            fail(f"x_{split} has shape {x.shape}, expected (N, 28, 28)")
        if y.ndim != 1:
            fail(f"y_{split} has shape {y.shape}, expected (N,)")
        if len(x) != len(y):
            fail(f"x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        if x.dtype != np.uint8:
            fail(f"x_{split} has dtype {x.dtype}, expected uint8 pixels 0..255")
        if not np.issubdtype(y.dtype, np.integer):
            fail(f"y_{split} has dtype {y.dtype}, expected integer labels")
        if y.min() < 0 or y.max() > 9:
            fail(f"y_{split} has labels in {y.min()}..{y.max()}, expected 0..9")


def _read_npz(path: Path) -> dict:
    if not path.exists():
        raise MnistDataError(f"{path}: no such file; {FIX_HINT}")
    if path.is_dir():
        raise MnistDataError(f"{path}: is a directory, not an .npz file; {FIX_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = "empty file" if path.stat().st_size == 0 else f"not a readable npz ({exc})"
        raise MnistDataError(f"{path}: {reason}; {FIX_HINT}") from None


def mnist_source() -> Path | None:
    """The local MNIST file that `load_mnist` will read, or None if it would download."""
    env = os.environ.get(MNIST_ENV)
    if env:
        return Path(env).expanduser()
    cache = KERAS_CACHE.expanduser()
    return cache if cache.exists() else None


def load_mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The validated 60,000/10,000 uint8 split, shaped as `keras.datasets.mnist.load_data()`."""
    path = mnist_source()
    if path is not None:
        arrays, source = _read_npz(path), str(path)
    else:
        import keras

        try:
            (xtr, ytr), (xte, yte) = keras.datasets.mnist.load_data()
        except Exception as exc:  # network failures come in many types
            raise MnistDataError(f"MNIST download failed ({exc.__class__.__name__}); {FIX_HINT}") from None
        arrays, source = dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte), "keras download"
    validate_mnist(arrays, source)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


@dataclass
class Split:
    """Preprocessed train / validation / test arrays (float32 images in [0, 1], int labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.x_train.shape[1:]


def to_model_input(images: np.ndarray, layout: str) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 in [0, 1], flat (N, 784) or image (N, 28, 28, 1)."""
    x = images.astype("float32") / 255.0
    if layout == "flat":
        return x.reshape(len(x), 784)
    if layout == "image":
        return x[..., None]
    raise ValueError(f"unknown layout {layout!r}: use 'flat' or 'image'")


def mnist_split(layout: str, limit: int | None = None, validation_size: float | None = None,
                test_limit: int | None = None) -> Split:
    """MNIST for one experiment: the validation set is carved from the end of the training set.

    `limit` keeps the first N training images (before the validation carve) and, unless
    `test_limit` is given, the first N test images: quick runs and tests use it.
    `validation_size` is a count (>= 1) or a fraction of the training images (< 1); by
    default 5,000 images, or 10% when fewer than 50,000 training images are used.
    """
    (x_train, y_train), (x_test, y_test) = load_mnist()
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        test_limit = limit if test_limit is None else test_limit
    if test_limit is not None:
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    if validation_size is None:
        validation_size = min(5000, max(1, len(x_train) // 10))
    n_val = int(round(validation_size * len(x_train))) if validation_size < 1 else int(validation_size)
    if not 0 < n_val < len(x_train):
        raise UsageError(
            f"--validation-size {validation_size} leaves no training or no validation images "
            f"out of {len(x_train)}; use a count below {len(x_train)} or a fraction in (0, 1)"
        )
    cut = len(x_train) - n_val
    as_input = lambda images: to_model_input(images, layout)  # noqa: E731
    return Split(
        x_train=as_input(x_train[:cut]), y_train=y_train[:cut].astype("int64"),
        x_val=as_input(x_train[cut:]), y_val=y_train[cut:].astype("int64"),
        x_test=as_input(x_test), y_test=y_test.astype("int64"),
    )


TOY_FUNCTIONS = ("f0", "f1", "f2")
TOY_DESCRIPTIONS = {"f0": "sum(xW) (linear)", "f1": "max(x)", "f2": "log(sum(exp(xW)))"}


def toy_weights(seed: int = 0) -> np.ndarray:
    """The fixed random W of section 2.4: 4x4, entries uniform in [-2, 2]."""
    return np.random.default_rng(seed).uniform(-2.0, 2.0, (4, 4))


def toy_target(fn: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The clean target f0, f1 or f2 of each row of `x` (N, 4) -> (N,)."""
    if fn == "f0":
        return (x @ w).sum(axis=1)
    if fn == "f1":
        return x.max(axis=1)
    if fn == "f2":
        z = x @ w
        top = z.max(axis=1, keepdims=True)  # log-sum-exp, computed stably
        return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]
    raise ValueError(f"unknown toy function {fn!r}: use one of {TOY_FUNCTIONS}")


@dataclass
class ToyData:
    """Noisy train/test targets of one toy function, with the clean test targets for the noise floor."""

    split: Split
    y_test_clean: np.ndarray

    @property
    def noise_floor(self) -> float:
        """MSE of the noisy test targets against the clean ones."""
        return float(np.mean((self.split.y_test - self.y_test_clean) ** 2))


def toy_dataset(fn: str, n_train: int = 1000, n_test: int = 200, noise: float = 0.01, seed: int = 0,
                w_seed: int = 0) -> ToyData:
    """x uniform in [-2.5, 2.5]^4, y = f(x) * (1 + noise * N(0, 1)) (1% multiplicative noise by default)."""
    rng = np.random.default_rng(seed)
    w = toy_weights(w_seed)
    x = rng.uniform(-2.5, 2.5, (n_train + n_test, 4))
    clean = toy_target(fn, x, w)
    noisy = clean * (1.0 + noise * rng.standard_normal(len(clean)))
    f32 = lambda a: a.astype("float32")  # noqa: E731
    split = Split(x_train=f32(x[:n_train]), y_train=f32(noisy[:n_train]), x_val=None, y_val=None,
                  x_test=f32(x[n_train:]), y_test=f32(noisy[n_train:]))
    return ToyData(split=split, y_test_clean=f32(clean[n_train:]))
