"""The one fit path every section uses.

    fit(make_model, data, run_dir, FitConfig(...)) -> FitResult    (make_model(steps_per_epoch) -> compiled model)

`fit` seeds everything, builds the model (inside the tf.distribute strategy's scope and the
precision policy), owns the callbacks (in this order: the per-epoch recorder that adds test
metrics and writes history.csv, an atomic BackupAndRestore, TerminateOnNaN, TensorBoard) and
draws history.png at the end.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from kerasdl import PRECISIONS, plots  # noqa: F401  (PRECISIONS: re-exported as training.PRECISIONS)
from kerasdl.data import Split
from kerasdl.errors import UsageError

DISTRIBUTE = ("none", "mirrored", "multiworker")


@dataclass
class FitConfig:
    """How to train: the knobs shared by every experiment."""

    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    restart: bool = False  # ignore a backup left by an interrupted run and start over
    test_curve: bool = True  # evaluate the test set after every epoch (the write-up's train/test plots)
    terminate_on_nan: bool = False  # stop at the first NaN/inf loss (diverging learning rates)
    tensorboard: bool = True
    backup: bool = True  # BackupAndRestore each epoch (resume after a crash); off for many tiny runs
    # Keep the backup after fit returns: the caller removes it (discard_backup) once what it does
    # with the trained model (evaluate, export, summary) is on disk, so a crash in between resumes
    # from the trained weights instead of training again.
    keep_backup: bool = False
    distribute: str = "none"
    precision: str = "float32"  # a Keras dtype policy: float32, mixed_bfloat16 or mixed_float16
    # Op determinism (bit-identical reruns); None: on for float32, off under mixed precision, the
    # setting the README's mixed-precision timings were measured with (mixed runs do not promise
    # bit-identical reruns).
    deterministic: bool | None = None
    verbose: int | str = "auto"
    title: str = ""
    # Train steps per graph call (Keras' steps_per_execution) at most; the largest divisor of the
    # steps per epoch up to it is used (execution_steps). None: up to 16.
    steps_per_execution: int | None = None


@dataclass
class FitResult:
    model: keras.Model
    history: list[dict]
    train_seconds: float
    history_csv: Path
    history_plot: Path
    run_dir: Path
    diverged: bool = False
    resumed_from_epoch: int = 0
    replicas: int = 1
    keras_history: keras.callbacks.History | None = None


def bf16_supported() -> bool | None:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); None when it cannot be told."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def precision_policy(name: str):
    """Models built inside use the Keras dtype policy `name`; the previous global policy comes back after.

    mixed_bfloat16 and mixed_float16 compute in 16 bits and keep float32 weights; under
    mixed_float16 the optimizer is wrapped in a LossScaleOptimizer (models.optimizer). Where a
    policy works but slowly, one warning says so: mixed_bfloat16 on a CPU without native
    bfloat16, mixed_float16 without a GPU (TensorFlow's CPU float16 kernels are a slow
    fallback: the convnet's epoch took 2.8x its float32 time on our 2-core machine).
    """
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: use one of {', '.join(PRECISIONS)}")
    on_cpu = name != "float32" and not tf.config.list_logical_devices("GPU")
    if on_cpu and name == "mixed_bfloat16" and bf16_supported() is False:
        logging.getLogger("kerasdl.training").warning(
            "this CPU has no native bfloat16 (no avx512_bf16/amx_bf16): mixed_bfloat16 will be slower than float32")
    if on_cpu and name == "mixed_float16":
        logging.getLogger("kerasdl.training").warning(
            "mixed_float16 is meant for GPUs and none is visible: TensorFlow's CPU float16 kernels are slow "
            "fallbacks (convolutions about 3x slower than float32); use --precision mixed_bfloat16 on CPUs")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Same seed -> same weights and shuffles; with `deterministic`, op determinism too (same history)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:  # TensorFlow exports no public switch back off
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()


def strategy_for(distribute: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by `--distribute`."""
    if distribute == "none":
        return tf.distribute.get_strategy()
    if distribute == "mirrored":  # every GPU, else every logical CPU device
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus or tf.config.list_logical_devices("CPU")])
    if distribute == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribute mode {distribute!r}: use one of {DISTRIBUTE}")


def worker_task() -> tuple[str, int, bool]:
    """(task type, index, is_chief) of this process in a multi-worker cluster described by TF_CONFIG.

    The chief is the 'chief' task, or worker 0 when the cluster has no chief; it alone
    writes the shared run directory and the exported model.
    """
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return kind, index, kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def weights_digest(model: keras.Model) -> str:
    """sha256 of all weights' bytes: equal digests mean bit-identical models (e.g. across workers)."""
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(np.ascontiguousarray(w.numpy()).tobytes())
    return digest.hexdigest()


def _patch_keras_for_multiworker() -> None:
    """Keras 3.15's TF trainer cannot run MultiWorkerMirroredStrategy (keras-team/keras#20585): it
    reduces per-replica scalar metrics with `axis=0`. Reduce them with `axis=None` instead."""
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "kerasdl_patched", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.kerasdl_patched = True
    trainer.reduce_per_replica = reduce_per_replica


def _prepare_multiworker(model: keras.Model, strategy, data: Split) -> None:
    """Build metrics and optimizer from a plain batch (Keras' own symbolic build tries to reduce a
    distributed batch and fails under MultiWorkerMirroredStrategy); fit then runs inside the scope."""
    _patch_keras_for_multiworker()
    with strategy.scope():
        model._symbolic_build(data_batch=(data.x_train[:2], data.y_train[:2]))
    model._distribute_strategy = None


def _cell(key: str, value: str):
    if key == "epoch":
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value  # e.g. the precision policy


def read_history(path: Path) -> list[dict]:
    """Rows of a history.csv as dicts of floats (epoch as int, text columns as text)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: _cell(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(rows: list[dict], path: Path) -> None:
    """Write history.csv atomically (temporary sibling, then rename)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


class EpochRecorder(keras.callbacks.Callback):
    """Adds test loss/metrics to each epoch's logs and rewrites history.csv after every epoch.

    Placed before BackupAndRestore, so an epoch's row is on disk before its backup is taken:
    a crash between the two resumes at that epoch again (its row is dropped and rewritten),
    and no crash can leave a backed-up epoch without a row. The first epoch begun is where
    the run (re)starts; rows from it on belong to a run that did not finish, and are dropped.
    """

    def __init__(self, csv_path: Path, test: tuple[np.ndarray, np.ndarray] | None, batch_size: int,
                 precision: str = "float32"):
        super().__init__()
        self.csv_path, self.test, self.batch_size, self.precision = csv_path, test, batch_size, precision
        self.rows: list[dict] = []
        self.initial_epoch: int | None = None
        self.test_seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        if self.initial_epoch is None:  # after every on_train_begin, BackupAndRestore's restore included
            self.initial_epoch = epoch
            self.rows = [r for r in read_history(self.csv_path) if r["epoch"] < epoch]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.test is not None:
            start = time.perf_counter()
            x, y = self.test
            if len(x) <= 2048:  # one batch: skips evaluate()'s per-call data pipeline (~90 ms on the toy runs)
                scores = self.model.test_on_batch(x, y, return_dict=True)
            else:
                scores = self.model.evaluate(x, y, batch_size=max(self.batch_size, 1000), verbose=0, return_dict=True)
            self.test_seconds += time.perf_counter() - start
            logs.update({f"test_{k}": v for k, v in scores.items()})
        self.rows.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}, "precision": self.precision})
        write_history(self.rows, self.csv_path)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose every backup is one atomic step.

    Keras overwrites `latest.weights.h5` in place, so a kill during that write leaves a file
    h5py cannot open and the run cannot resume (seen in our kill -9 test: "bad object header
    version number"). Here each epoch's weights go to a new file, and the metadata that names
    it is replaced by one rename, the commit point; older weight files are removed after.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights = f"epoch-{self._current_epoch}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, weights), overwrite=True)
        tmp = f"{self._training_metadata_path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": weights}, f)
        os.replace(tmp, self._training_metadata_path)
        for old in Path(self.backup_dir).glob("epoch-*.weights.h5"):
            if old.name != weights:
                old.unlink(missing_ok=True)

    def _load_model(self):
        metadata = check_backup(Path(self.backup_dir))
        if metadata is None:
            return
        weights = os.path.join(self.backup_dir, metadata["weights"])
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its slots must exist to be restored
        try:
            self.model.load_weights(weights)
        except Exception as exc:  # h5py and Keras raise several types for a file of the wrong model
            raise UsageError(_refusal(Path(self.backup_dir), f"its weights {metadata['weights']} do not load "
                                      f"into this model ({exc.__class__.__name__})")) from None
        self.model._initial_epoch = metadata["epoch"]


def _refusal(backup_dir: Path, why: str) -> str:
    return (f"{backup_dir}: cannot resume: {why}; pass --restart to discard this backup and train from epoch 1 "
            "(or remove the directory)")


def check_backup(backup_dir: Path) -> dict | None:
    """The metadata of the resumable backup in `backup_dir`, None when there is none to resume;
    UsageError when its metadata is unreadable or names weights that are missing or unreadable.

    Resuming must never continue the epoch count on weights that are not there (the run would
    carry on from random weights and its history would look continuous).
    """
    meta_path = backup_dir / "training_metadata.json"
    if not meta_path.exists():
        return None  # killed before the first backup was committed: nothing to resume
    try:
        metadata = json.loads(meta_path.read_text())
        int(metadata["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(_refusal(backup_dir, f"its metadata {meta_path.name} is unreadable "
                                  f"({exc.__class__.__name__})")) from None
    metadata.setdefault("weights", "latest.weights.h5")
    weights = backup_dir / metadata["weights"]
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


def train_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tuple[tf.data.Dataset, int]:
    """Endless shuffled batches of in-memory arrays, and how many batches make one epoch.

    Fed with arrays, Keras builds a new tf.data iterator every epoch; on the full MNIST set
    that start-up stalled for ~20 s in about a third of the epochs on our 2-core machine
    (README, performance notes). One endless iterator for the whole fit avoids it: only
    the indices are shuffled (a new order every epoch, reproducible from `seed`), and each
    batch is gathered from the arrays held once as tensors.
    """
    n = len(x)
    images, labels = tf.constant(x), tf.constant(y)
    batches = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE)
    )
    return batches.repeat().prefetch(tf.data.AUTOTUNE), math.ceil(n / batch_size)


def execution_steps(steps_per_epoch: int, most: int = 16) -> int:
    """Keras' steps_per_execution for an epoch of `steps_per_epoch` steps: the largest divisor of
    it up to `most`.

    Running several train steps per call of the compiled function saves Keras' per-step Python
    work (half the MLP's epoch together with XLA on our 2-core EPYC). It must divide the epoch:
    fed our endless dataset, Keras 3.15 rounds each epoch up to whole executions, so 430 steps
    at 16 per call would train 432 (and callbacks run once per call, not per step).
    """
    return max(k for k in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % k == 0)


def _diverged(rows: list[dict]) -> bool:
    return any(not math.isfinite(r.get("loss", 0.0)) for r in rows)


def fit(make_model: Callable[[int], keras.Model], data: Split, run_dir, config: FitConfig,
        callbacks: list[keras.callbacks.Callback] | None = None, fit_kwargs: dict | None = None) -> FitResult:
    """Seed, build (in strategy scope), train with the shared callbacks, write history.csv/png.

    `make_model(steps_per_epoch)` returns a compiled model; it is called here so that seeding
    and the distribution strategy's scope come first, and told how many optimizer steps make
    one epoch at the global batch (all replicas together), so learning-rate schedules are
    sized right under any strategy. `callbacks` are appended to the shared ones (Keras Tuner
    passes its own this way); `fit_kwargs` go to `model.fit` as they are (e.g. class_weight).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = run_dir / "backup"
    csv_path, png_path = run_dir / "history.csv", run_dir / "history.png"
    if config.restart:
        shutil.rmtree(backup_dir, ignore_errors=True)
    elif config.backup and backup_dir.exists():
        check_backup(backup_dir)  # refuse a broken backup before anything is built or trained
    if not backup_dir.exists() and csv_path.exists():
        csv_path.unlink()  # a fresh run: the old history belongs to a finished run

    deterministic = config.precision == "float32" if config.deterministic is None else config.deterministic
    seed_everything(config.seed, deterministic)
    strategy = strategy_for(config.distribute)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    steps = math.ceil(len(data.x_train) / global_batch)  # optimizer steps per epoch, all replicas together
    with strategy.scope(), precision_policy(config.precision):
        model = make_model(steps)
    if not model.built:
        model.build((None, *data.input_shape))
    # Set before the first fit builds the train function (compile stores it the same way).
    model.steps_per_execution = execution_steps(steps, config.steps_per_execution or 16)

    test = (data.x_test, data.y_test) if config.test_curve and data.x_test is not None else None
    recorder = EpochRecorder(csv_path, test, config.batch_size, config.precision)
    shared = [recorder]  # first: the epoch's row is written before BackupAndRestore marks the epoch done
    if config.backup:
        shared.append(AtomicBackupAndRestore(str(backup_dir), delete_checkpoint=not config.keep_backup))
    if config.terminate_on_nan:
        shared.append(keras.callbacks.TerminateOnNaN())
    if config.tensorboard:
        shared.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))

    validation = (data.x_val, data.y_val) if data.x_val is not None and len(data.x_val) else None
    multiworker = config.distribute == "multiworker"
    if multiworker:  # arrays: Keras shards them across the workers itself
        _prepare_multiworker(model, strategy, data)
        inputs = dict(x=data.x_train, y=data.y_train, batch_size=global_batch)
    else:
        batches, _ = train_batches(data.x_train, data.y_train, global_batch, config.seed)
        inputs = dict(x=batches, steps_per_epoch=steps, shuffle=False)  # the dataset shuffles itself
    start = time.perf_counter()
    with strategy.scope() if multiworker else contextlib.nullcontext():
        keras_history = model.fit(
            **inputs,
            epochs=config.epochs,
            validation_data=validation,
            callbacks=shared + list(callbacks or []),
            verbose=config.verbose,
            **(fit_kwargs or {}),
        )
    train_seconds = time.perf_counter() - start - recorder.test_seconds

    if recorder.initial_epoch is None:  # resumed after the last epoch: fit trained nothing
        recorder.rows = read_history(csv_path)
        recorder.initial_epoch = getattr(model, "_initial_epoch", None) or 0
    rows = recorder.rows
    title = config.title or model.name
    plots.history(rows, png_path, title=title if config.precision == "float32" else f"{title} ({config.precision})")
    return FitResult(
        model=model, history=rows, train_seconds=train_seconds, history_csv=csv_path,
        history_plot=png_path, run_dir=run_dir, diverged=_diverged(rows),
        resumed_from_epoch=recorder.initial_epoch or 0, keras_history=keras_history,
        replicas=strategy.num_replicas_in_sync,
    )
