"""Atomic export of trained models, and loading them back for inference.

`export(model, export_dir, name)` writes `export_dir/name/` (TF SavedModel, `serve` endpoint)
and `export_dir/name.keras` (full Keras format). Both are written to temporary siblings
first and renamed into place only when complete, so a failed or interrupted export never
leaves a half-written model and never destroys the previous one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from kerasdl.errors import UsageError


@dataclass
class Exported:
    saved_model: Path
    keras_model: Path


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished directory `tmp` to `final`; an old `final` is removed only after."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _export_saved_model(model: keras.Model, path: Path) -> None:
    """A SavedModel whose `serve` (also `serving_default`) endpoint runs the model in inference mode.

    `model.export()` serves `model.__call__` without `training=False`, and Keras'
    RandomTranslation (the convnet's shift augmentation) defaults to training mode, so the
    exported convnet would shift every image it is asked about. Here the endpoint says
    `training=False`: dropout and augmentation are off, as in `model.predict`.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="inputs")],
    )
    archive.write_out(str(path), verbose=False)


def export(model: keras.Model, export_dir, name: str, keras_file: bool = True) -> Exported:
    """Export `model` as `export_dir/name/` (SavedModel) and `export_dir/name.keras`, atomically."""
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    saved_model, keras_path = export_dir / name, export_dir / f"{name}.keras"
    work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=export_dir))
    try:
        _export_saved_model(model, work / "saved_model")
        if keras_file:
            model.save(work / "model.keras")
        # Both complete: now swap them in. The .keras rename is atomic; the directory
        # swap keeps the old SavedModel until the new one is in place.
        _replace_dir(work / "saved_model", saved_model)
        if keras_file:
            os.replace(work / "model.keras", keras_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Exported(saved_model=saved_model, keras_model=keras_path)


def load_saved_model(path):
    """Load a SavedModel with TensorFlow alone (no kerasdl code); a clear UsageError if it is not one."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such SavedModel directory; pass a directory from saved_models/")
    if not (path / "saved_model.pb").is_file():
        raise UsageError(f"{path}: not a SavedModel (no saved_model.pb inside); pass a directory from saved_models/")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TF raises several types for corrupt models
        raise UsageError(f"{path}: the SavedModel could not be loaded ({exc.__class__.__name__}); re-export it") from None
    if "serving_default" not in loaded.signatures:
        raise UsageError(f"{path}: the SavedModel has no serving_default signature; export it with model.export()")
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
