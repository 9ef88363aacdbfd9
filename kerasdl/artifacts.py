"""Versioned, atomic export of trained models, and loading them back for inference.

`export(model, export_dir, name)` writes TensorFlow Serving's layout:

    export_dir/name/<version>/   TF SavedModel (`serve` and `serving_default` endpoints), its model
                                 card, and model.keras (the full-fidelity Keras file)
    export_dir/name.keras        the newest version's model.keras (a hard link, replaced by one rename)

A version is a positive integer, one more than any numbered entry present. It is written in
a hidden temporary directory beside the versions, flushed to disk, and appears by one rename,
complete or not at all; the previous versions stay loadable meanwhile, and only the newest
`keep` remain. One exporter per name at a time (a lock in export_dir/name/.lock); what a
killed exporter left behind is removed by the next one.
Readers (`resolve`, `load_saved_model`) take `export_dir/name` (its newest version) or a
version directory itself.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from kerasdl import atomic
from kerasdl.errors import UsageError

KEEP = 3  # versions kept per model
KERAS_FILE = "model.keras"  # each version's own Keras file; export_dir/<name>.keras is a link to the newest's
SERVING_DIR = ".serving"  # <name>/.serving/<version>.<pid>: that version is loaded by a running kerasdl.serve

log = logging.getLogger("kerasdl.artifacts")


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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under `root` to disk, so the rename that publishes it
    cannot reach the disk before the data it names (a power cut would leave an empty version)."""
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


def _numbered(model_dir: Path) -> list[int]:
    """Every numeric entry in `model_dir`, complete version or not."""
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())


def _publish(work: Path, model_dir: Path) -> int:
    """Rename the finished `work` directory to the next version number; return it.

    The number is one more than any numeric entry, complete or not, so a stray or partial
    numbered directory (a copy gone wrong, a version a tool left half-deleted) is stepped
    over and named in a warning, never renamed onto; a rename onto an existing, non-empty
    directory fails, so a racing exporter takes the next number. Bounded: no endless loop.
    """
    for _ in range(100):
        taken = _numbered(model_dir)
        strays = sorted(set(taken) - set(versions(model_dir)))
        if strays:
            log.warning("%s: skipping numbered entries that are not complete SavedModels: %s; remove them",
                        model_dir, ", ".join(map(str, strays)))
        version = (taken or [0])[-1] + 1
        try:
            os.rename(work, model_dir / str(version))
            return version
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
    raise UsageError(f"{model_dir}: could not find a free version number after 100 tries; remove stray entries")


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


def name_lock(export_dir, name: str):
    """The lock of one exported name (a context manager): one exporter of `name` at a time."""
    from kerasdl import locks

    model_dir = Path(export_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    return locks.hold(model_dir / ".lock", f"exported model {model_dir}",
                      "pass --name to export under another name, or wait for it to finish")


def _migrate_legacy(model_dir: Path) -> None:
    """Move an export from before versioning (model_dir/saved_model.pb) to version 1 in one step.

    Its files are hard-linked into a hidden directory that is renamed to `1`: that rename is
    the commit, before it the old layout is whole, after it version 1 is. Only then are the
    old top-level files removed, saved_model.pb first, so readers go to version 1.
    """
    if not (model_dir / "saved_model.pb").is_file():
        return
    legacy = [p for p in model_dir.iterdir() if not p.name.startswith(".") and not p.name.isdigit()]
    if 1 not in versions(model_dir):  # else a crash came after the commit last time: only the cleanup is left
        staging = Path(tempfile.mkdtemp(prefix=".migrate-", dir=model_dir))
        for entry in legacy:
            if entry.is_dir():
                shutil.copytree(entry, staging / entry.name, copy_function=os.link)
            else:
                os.link(entry, staging / entry.name)
        _fsync_tree(staging)
        os.rename(staging, model_dir / "1")
        _fsync(model_dir)
    (model_dir / "saved_model.pb").unlink()
    for entry in legacy:
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _clean_stale(model_dir: Path, name: str) -> None:
    """Remove what a killed exporter of `name` left: temporary version and staging directories.
    Called under the name's lock, so none of them can belong to a live exporter."""
    for entry in [*model_dir.glob(".export-*"), *model_dir.glob(".migrate-*"),
                  *model_dir.parent.glob(f".{name}.keras.tmp-*")]:
        log.info("removing %s, left by an interrupted export", entry)
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _link_keras(version_dir: Path, keras_path: Path) -> None:
    """Make `keras_path` the version's own model.keras, by one rename of a hard link (a copy where
    the filesystem has no hard links): it always matches a complete version."""
    source = version_dir / KERAS_FILE
    if not source.is_file():
        return
    with atomic.replacing(keras_path) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
            _fsync(tmp)
    _fsync(keras_path.parent)


def _card_digest(version_dir: Path) -> str | None:
    try:
        return json.loads((version_dir / "model_card.json").read_text()).get("weights_sha256")
    except (OSError, ValueError):
        return None


def export(model: keras.Model, export_dir, name: str, keras_file: bool = True, keep: int = KEEP,
           card: dict | None = None, digest: str | None = None, reuse: bool = False) -> Exported:
    """Export `model` as a new version `export_dir/name/<N>/` (and `export_dir/name.keras`), atomically.

    `card` (what the model is, its training config and results) is written into the version
    as model_card.json/.md before the version appears, with `digest` (training.weights_digest)
    when given. With `reuse`, a newest version whose card records the same digest is taken as
    it is (a run that crashed after exporting and resumed) instead of published a second time.
    A failure before the version appears (a full disk, a read-only directory) is a UsageError;
    the previous versions and <name>.keras are untouched and nothing partial stays visible.
    """
    from kerasdl import faults

    model_dir = Path(export_dir) / name
    keras_path = model_dir.parent / f"{name}.keras"
    try:
        lock = name_lock(export_dir, name)
    except OSError as exc:
        raise UsageError(f"{model_dir}: cannot export there ({exc.strerror}); choose a directory you can "
                         "write to") from None
    with lock:
        _migrate_legacy(model_dir)
        _clean_stale(model_dir, name)
        newest = versions(model_dir)[-1:]
        if reuse and digest and newest and _card_digest(model_dir / str(newest[0])) == digest:
            version = newest[0]
            log.info("%s: version %d already holds these weights; not exporting them again", model_dir, version)
        else:
            work = None
            try:
                work = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
                _export_saved_model(model, work)
                from kerasdl.serve import warmup

                warmup.write(work, name, model.input_shape[1:])  # assets.extra/tf_serving_warmup_requests
                if card is not None:
                    from kerasdl import cards

                    cards.write(work, {"name": name, **card, **({"weights_sha256": digest} if digest else {})})
                if keras_file:
                    model.save(work / KERAS_FILE)
                _fsync_tree(work)
                faults.point("export_written")
                version = _publish(work, model_dir)
                work = None
                _fsync(model_dir)
            except (OSError, tf.errors.OpError) as exc:
                previous = f"version {newest[0]} is untouched" if newest else "no earlier version exists"
                why = getattr(exc, "strerror", None) or getattr(exc, "message", None) or str(exc)
                raise UsageError(f"export of {name} to {model_dir} failed before the new version was published "
                                 f"({why}); {previous}; free disk space or choose a writable --export-dir, "
                                 "then rerun") from None
            finally:
                if work is not None:
                    shutil.rmtree(work, ignore_errors=True)
            faults.point("export_published")
        if keras_file:
            _link_keras(model_dir / str(version), keras_path)
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
