"""Versioned, atomic export of trained models, and loading them back for inference.

`export(model, export_dir, name)` writes TensorFlow Serving's layout:

    export_dir/name/<version>/   TF SavedModel (`serve` and `serving_default` endpoints)
    export_dir/name.keras        the full-fidelity Keras file of the newest version

A version is a positive integer, one more than the newest present. It is written in a
hidden temporary directory beside the versions and appears by one rename, complete or not
at all; the previous versions stay loadable meanwhile, and only the newest `keep` remain.
Readers (`resolve`, `load_saved_model`) take `export_dir/name` (its newest version) or a
version directory itself.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from kerasdl.errors import UsageError
from kerasdl.serve import warmup

KEEP = 3  # versions kept per model
SERVING_DIR = ".serving"  # <name>/.serving/<version>.<pid>: that version is loaded by a running kerasdl.serve


@dataclass
class Exported:
    saved_model: Path  # the new version directory, e.g. saved_models/cnn/4
    keras_model: Path | None
    version: int


def versions(model_dir) -> list[int]:
    """The complete versions under `model_dir`, oldest first (TF Serving ignores non-numeric names too)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    found = [int(p.name) for p in model_dir.iterdir()
             if p.name.isdigit() and int(p.name) > 0 and (p / "saved_model.pb").is_file()]
    return sorted(found)


def resolve(path) -> Path:
    """A SavedModel directory: `path` itself if it is one, else its newest version; UsageError otherwise."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such SavedModel directory; pass a directory from saved_models/, e.g. saved_models/cnn")
    if (path / "saved_model.pb").is_file():
        return path
    found = versions(path)
    if not found:
        raise UsageError(f"{path}: not a SavedModel (no saved_model.pb inside, and no version directory "
                         "1/, 2/, ... holding one); pass a directory from saved_models/")
    return path / str(found[-1])


def _export_saved_model(model: keras.Model, path: Path) -> None:
    """A SavedModel whose `serve` (also `serving_default`) endpoint runs the model in inference mode.

    `model.export()` serves `model.__call__` without `training=False`, and Keras'
    RandomTranslation (the convnet's shift augmentation) defaults to training mode, so the
    exported convnet would shift every image it is asked about. Here the endpoint says
    `training=False`: dropout and augmentation are off, as in `model.predict`. It takes float32
    and returns float32 whatever precision policy the model was trained under.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda x: tf.cast(model(x, training=False), tf.float32),  # float32 out whatever the policy
        input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="inputs")],
    )
    archive.write_out(str(path), verbose=False)


def _publish(work: Path, model_dir: Path) -> int:
    """Rename the finished `work` directory to the next free version number; return it.

    A rename onto an existing, non-empty version directory fails, so two exporters racing
    for the same number cannot overwrite each other: the loser takes the next number.
    """
    while True:
        version = (versions(model_dir) or [0])[-1] + 1
        try:
            os.rename(work, model_dir / str(version))
            return version
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise


def in_use(model_dir) -> set[int]:
    """Versions a live kerasdl.serve process on this machine has loaded (its markers in .serving/)."""
    used = set()
    for marker in (Path(model_dir) / SERVING_DIR).glob("*.*"):
        version, _, pid = marker.name.partition(".")
        if not (version.isdigit() and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue  # the server is gone: its marker protects nothing
        except PermissionError:
            pass  # alive, another user's
        used.add(int(version))
    return used


def prune(model_dir: Path, keep: int = KEEP) -> list[int]:
    """Delete all but the newest `keep` versions, except those a running server has loaded; return the removed ones."""
    old = [v for v in versions(model_dir)[:-keep] if v not in in_use(model_dir)] if keep > 0 else []
    for version in old:
        shutil.rmtree(model_dir / str(version), ignore_errors=True)
    return old


def export(model: keras.Model, export_dir, name: str, keras_file: bool = True, keep: int = KEEP,
           card: dict | None = None) -> Exported:
    """Export `model` as a new version `export_dir/name/<N>/` (and `export_dir/name.keras`), atomically.

    `card` (what the model is, its training config and results) is written into the version
    as model_card.json/.md before the version appears.
    """
    model_dir = Path(export_dir) / name
    if (model_dir / "saved_model.pb").is_file():
        # An export from before versioning: moved once, to version 1 (two renames, a moment apart).
        legacy = Path(tempfile.mkdtemp(prefix=f".{name}.legacy-", dir=model_dir.parent))
        os.rename(model_dir, legacy / "1")
        os.rename(legacy, model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
    keras_path = model_dir.parent / f"{name}.keras"
    staged_keras = model_dir / f"{work.name}.keras"
    try:
        _export_saved_model(model, work)
        warmup.write(work, name, model.input_shape[1:])  # assets.extra/tf_serving_warmup_requests
        if card is not None:
            from kerasdl import cards

            cards.write(work, {"name": name, **card})
        if keras_file:
            model.save(staged_keras)
        version = _publish(work, model_dir)
        if keras_file:
            os.replace(staged_keras, keras_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        staged_keras.unlink(missing_ok=True)
    prune(model_dir, keep)
    return Exported(saved_model=model_dir / str(version), keras_model=keras_path if keras_file else None,
                    version=version)


def load_saved_model(path):
    """Load a SavedModel (or a model directory's newest version) with TensorFlow alone; UsageError if it is not one."""
    path = resolve(path)
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TF raises several types for corrupt models
        raise UsageError(f"{path}: the SavedModel could not be loaded ({exc.__class__.__name__}); re-export it") from None
    if "serving_default" not in loaded.signatures:
        raise UsageError(f"{path}: the SavedModel has no serving_default signature; export it with kerasdl.artifacts.export")
    return loaded


def serving_input_shape(loaded) -> tuple:
    """The per-example input shape of a loaded SavedModel's serving signature, e.g. (784,)."""
    fn = loaded.signatures["serving_default"]
    specs = list(fn.structured_input_signature[1].values())
    if len(specs) != 1:
        raise UsageError(f"the SavedModel takes {len(specs)} inputs; kerasdl models take one")
    return tuple(specs[0].shape[1:])


def serve(loaded, x) -> "tf.Tensor":
    """Run the SavedModel's `serve` endpoint on a float32 batch."""
    return loaded.serve(tf.constant(x, dtype=tf.float32))
