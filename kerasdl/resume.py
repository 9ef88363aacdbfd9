"""Resume state: the backup a run leaves each epoch in runs/<name>/backup/, checked before it is
trusted, restored at the start of the next fit, and removed once the run's results are on disk.

    backup/training_metadata.json   {"epoch": next epoch to run, "batch": 0, "weights": file name}
    backup/epoch-N.weights.h5       the weights (and optimizer state) after epoch N-1

The file layout is keras.callbacks.BackupAndRestore's, written through public Keras API only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras

from kerasdl import atomic
from kerasdl.errors import UsageError

METADATA = "training_metadata.json"


class Backup(keras.callbacks.Callback):
    """Back up the model after every epoch, each backup one atomic step; restore it when training begins.

    Keras' BackupAndRestore overwrites `latest.weights.h5` in place, so a kill during that write
    leaves a file h5py cannot open and the run cannot resume (seen in our kill -9 test: "bad object
    header version number"). Here each epoch's weights go to a new file, and the metadata that
    names it is replaced by one rename, the commit point; older weight files are removed after.
    The epoch to start from is passed to `model.fit(initial_epoch=...)` by the caller
    (`initial_epoch` below), so no private Keras state is touched.
    """

    def __init__(self, backup_dir, delete_when_done: bool = True):
        super().__init__()
        self.backup_dir, self.delete_when_done = Path(backup_dir), delete_when_done

    def initial_epoch(self) -> int:
        """The epoch a fit resumes at: the one after the last backed-up epoch, 0 without a backup."""
        metadata = check_backup(self.backup_dir)
        return int(metadata["epoch"]) if metadata else 0

    def on_train_begin(self, logs=None):
        metadata = check_backup(self.backup_dir)
        if metadata is None:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # its slots must exist to be restored
        try:
            self.model.load_weights(str(self.backup_dir / metadata["weights"]))
        except Exception as exc:  # h5py and Keras raise several types for a file of the wrong model
            raise UsageError(_refusal(self.backup_dir, f"its weights {metadata['weights']} do not load "
                                      f"into this model ({exc.__class__.__name__})")) from None

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epoch + 1}.weights.h5"
        self.model.save_weights(str(self.backup_dir / weights), overwrite=True)
        atomic.write_text(self.backup_dir / METADATA, json.dumps({"epoch": epoch + 1, "batch": 0, "weights": weights}))
        for old in self.backup_dir.glob("epoch-*.weights.h5"):
            if old.name != weights:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        if self.delete_when_done:
            shutil.rmtree(self.backup_dir, ignore_errors=True)


def _refusal(backup_dir: Path, why: str) -> str:
    return (f"{backup_dir}: cannot resume: {why}; pass --restart to discard this backup and train from epoch 1 "
            "(or remove the directory)")


def check_backup(backup_dir: Path) -> dict | None:
    """The metadata of the resumable backup in `backup_dir`, None when there is none to resume;
    UsageError when its metadata is unreadable or names weights that are missing or unreadable.

    Resuming must never continue the epoch count on weights that are not there (the run would
    carry on from random weights and its history would look continuous).
    """
    meta_path = Path(backup_dir) / METADATA
    if not meta_path.exists():
        return None  # killed before the first backup was committed: nothing to resume
    try:
        metadata = json.loads(meta_path.read_text())
        int(metadata["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(_refusal(backup_dir, f"its metadata {meta_path.name} is unreadable "
                                  f"({exc.__class__.__name__})")) from None
    metadata.setdefault("weights", "latest.weights.h5")
    weights = Path(backup_dir) / metadata["weights"]
    if not weights.is_file():
        raise UsageError(_refusal(backup_dir, f"its metadata names weights {metadata['weights']} that are missing"))
    try:
        import h5py

        with h5py.File(weights, "r"):
            pass
    except Exception as exc:  # h5py raises OSError, and others for truncated files
        raise UsageError(_refusal(backup_dir, f"its weights {metadata['weights']} are unreadable "
                                  f"({exc.__class__.__name__})")) from None
    return metadata


def discard_backup(run_dir) -> None:
    """Remove a run's backup once its results are on disk (see FitConfig.keep_backup)."""
    shutil.rmtree(Path(run_dir) / "backup", ignore_errors=True)
