"""The one fit path every section uses.

    fit(make_model, data, run_dir, FitConfig(...)) -> FitResult    (make_model(steps_per_epoch) -> compiled model)

`fit` seeds everything, builds the model (inside the tf.distribute strategy's scope and the
precision policy, kerasdl.devices), owns the callbacks (in this order: the per-epoch recorder
that adds test metrics and writes history.csv, the atomic backup of kerasdl.resume,
TerminateOnNaN, TensorBoard), feeds the training arrays as one endless tf.data pipeline and
draws history.png at the end.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from kerasdl import PRECISIONS, atomic, compat, plots  # noqa: F401  (PRECISIONS: re-exported as training.PRECISIONS)
from kerasdl.data import Split
from kerasdl.devices import precision_policy, strategy_for
from kerasdl.resume import Backup, check_backup


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


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Same seed -> same weights and shuffles; with `deterministic`, op determinism too (same history)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        compat.disable_op_determinism()


def weights_digest(model: keras.Model) -> str:
    """sha256 of all weights' bytes: equal digests mean bit-identical models (e.g. across workers)."""
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(np.ascontiguousarray(w.numpy()).tobytes())
    return digest.hexdigest()


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
    with atomic.replacing(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


class EpochRecorder(keras.callbacks.Callback):
    """Adds test loss/metrics to each epoch's logs and rewrites history.csv after every epoch.

    Placed before the Backup callback, so an epoch's row is on disk before its backup is taken:
    a crash between the two resumes at that epoch again (its row is dropped and rewritten),
    and no crash can leave a backed-up epoch without a row. The first epoch begun is where
    the run (re)starts; rows from it on belong to a run that did not finish, and are dropped.
    """

    def __init__(self, csv_path: Path, test: tuple[np.ndarray, np.ndarray] | None, batch_size: int,
                 precision: str = "float32", distributed: bool = False):
        super().__init__()
        self.csv_path, self.test, self.batch_size, self.precision = csv_path, test, batch_size, precision
        self.rows: list[dict] = []
        self.initial_epoch: int | None = None
        self.test_seconds = 0.0
        self.distributed = distributed
        self._test_batches: tf.data.Dataset | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.initial_epoch is None:  # after every on_train_begin, the backup's restore included
            self.initial_epoch = epoch
            self.rows = [r for r in read_history(self.csv_path) if r["epoch"] < epoch]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.test is not None:
            start = time.perf_counter()
            x, y = self.test
            batch = max(self.batch_size, 1000)
            if len(x) <= 2048:  # one batch: skips evaluate()'s per-call data pipeline (~90 ms on the toy runs)
                scores = self.model.test_on_batch(x, y, return_dict=True)
            elif self.distributed:  # arrays: Keras distributes (and, multi-worker, shards) them itself
                scores = self.model.evaluate(x, y, batch_size=batch, verbose=0, return_dict=True)
            else:
                # The same batches, built once: from arrays, evaluate() converts the whole test set
                # into a new pipeline every epoch (0.1 s of a 0.4 s MLP test pass on our EPYC).
                if self._test_batches is None:
                    self._test_batches = eval_batches(x, y, batch)
                scores = self.model.evaluate(self._test_batches, verbose=0, return_dict=True)
            self.test_seconds += time.perf_counter() - start
            logs.update({f"test_{k}": v for k, v in scores.items()})
        self.rows.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}, "precision": self.precision})
        write_history(self.rows, self.csv_path)


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with tf.data's autotuning off: no tuner thread beside its iterators.

    With autotuning on, an iterator of a pipeline with AUTOTUNE parameters runs a background
    thread that re-tunes it on a period starting at 10 ms and doubling to a minute (10 ms, 30 ms,
    70 ms, ..., 10.23 s, 20.47 s, 40.95 s, 81.91 s, then every 60 s), and freeing the iterator can
    wait for that thread's current sleep to end. In TensorFlow 2.21 a `model.fit` on our endless
    training pipeline sometimes returned only at the tuner's next tick after its last epoch (up to
    a minute late for a long fit), and the tuned pipelines took CPU from the one-thread training
    steps (bench/fit_wait.py, docs/performance.md). Our pipelines are a gather per batch or a cached
    set of batches, with nothing for the tuner to tune; the batches, their order and the trained
    weights are the same either way.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """`x`, `y` as cached batches of `batch_size`, in order: a validation or test set evaluated every epoch."""
    return without_autotune(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache())


def train_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tuple[tf.data.Dataset, int]:
    """Endless shuffled batches of in-memory arrays, and how many batches make one epoch.

    Fed with arrays, Keras builds a new tf.data iterator every epoch; on the full MNIST set
    the switch stalled for ~20 s in about a third of the epochs on our 2-core machine (the old
    iterator waiting for tf.data's tuner, see without_autotune; docs/performance.md). One endless
    iterator for the whole fit avoids it: only the indices are shuffled (a new order every epoch,
    reproducible from `seed`), and each batch is gathered from the arrays held once as tensors.
    Autotuning is off (without_autotune), so the gathers run two at a time and two batches are
    prefetched.
    """
    n = len(x)
    images, labels = tf.constant(x), tf.constant(y)
    batches = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)), num_parallel_calls=2)
    )
    return without_autotune(batches.repeat().prefetch(2)), math.ceil(n / batch_size)


def execution_steps(steps_per_epoch: int, most: int = 16) -> int:
    """Keras' steps_per_execution for an epoch of `steps_per_epoch` steps: the largest divisor of
    it up to `most`.

    Running several train steps per call of the compiled function saves Keras' per-step Python
    work (0.35 of 4.4 CPU seconds of a full-data MLP epoch on our 2-core EPYC, bench/epoch_profile.py;
    nothing measurable for the convnet, whose step is 90 ms). It must divide the epoch:
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
    # Set before the first fit builds the train function (compile stores it the same way). One
    # step per call under tf.distribute: Keras 3.15's multi-step loop fails there ("Graph execution
    # error" in its has_next, with MirroredStrategy on two CPUs and MultiWorkerMirroredStrategy).
    distributed = config.distribute != "none"
    model.steps_per_execution = 1 if distributed else execution_steps(steps, config.steps_per_execution or 16)

    test = (data.x_test, data.y_test) if config.test_curve and data.x_test is not None else None
    recorder = EpochRecorder(csv_path, test, config.batch_size, config.precision, distributed=distributed)
    shared = [recorder]  # first: the epoch's row is written before the backup marks the epoch done
    backup = Backup(backup_dir, delete_when_done=not config.keep_backup) if config.backup else None
    if backup:
        shared.append(backup)
    if config.terminate_on_nan:
        shared.append(keras.callbacks.TerminateOnNaN())
    if config.tensorboard:
        shared.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))

    validation = (data.x_val, data.y_val) if data.x_val is not None and len(data.x_val) else None
    if validation is not None and not distributed:
        # Batches built once, evaluated 1,000 images at a time (as the test set), not autotuned:
        # from arrays, and with no batch size given beside our dataset, Keras validates 32 images
        # at a time through an autotuned pipeline with a new iterator every epoch (several times
        # slower: bench/fit_wait.py, docs/performance.md).
        validation = eval_batches(*validation, max(config.batch_size, 1000))
    multiworker = config.distribute == "multiworker"
    if multiworker:  # arrays: Keras shards them across the workers itself
        inputs = dict(x=data.x_train, y=data.y_train, batch_size=global_batch)
    else:
        batches, _ = train_batches(data.x_train, data.y_train, global_batch, config.seed)
        inputs = dict(x=batches, steps_per_epoch=steps, shuffle=False)  # the dataset shuffles itself
    initial_epoch = backup.initial_epoch() if backup else 0
    with contextlib.ExitStack() as scope:
        if multiworker:
            scope.enter_context(compat.multiworker_fit(model, strategy, data.x_train[:2], data.y_train[:2]))
        start = time.perf_counter()
        keras_history = model.fit(
            **inputs,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            validation_data=validation,
            callbacks=shared + list(callbacks or []),
            verbose=config.verbose,
            **(fit_kwargs or {}),
        )
    train_seconds = time.perf_counter() - start - recorder.test_seconds

    if recorder.initial_epoch is None:  # resumed after the last epoch: fit trained nothing
        recorder.rows = read_history(csv_path)
        recorder.initial_epoch = initial_epoch
    rows = recorder.rows
    title = config.title or model.name
    plots.history(rows, png_path, title=title if config.precision == "float32" else f"{title} ({config.precision})")
    return FitResult(
        model=model, history=rows, train_seconds=train_seconds, history_csv=csv_path,
        history_plot=png_path, run_dir=run_dir, diverged=_diverged(rows),
        resumed_from_epoch=recorder.initial_epoch or 0, keras_history=keras_history,
        replicas=strategy.num_replicas_in_sync,
    )
