"""Where and in what precision a fit runs: the Keras dtype policy, the tf.distribute strategy, and
this process's role in a multi-worker cluster."""

from __future__ import annotations

import contextlib
import json
import logging
import os

import keras
import tensorflow as tf

from kerasdl import PRECISIONS, cpu_has_bf16

DISTRIBUTE = ("none", "mirrored", "multiworker")
log = logging.getLogger(__name__)


def bf16_supported() -> bool | None:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); None when it cannot be told."""
    return cpu_has_bf16()


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
        log.warning("this CPU has no native bfloat16 (no avx512_bf16/amx_bf16): mixed_bfloat16 will be slower "
                    "than float32")
    if on_cpu and name == "mixed_float16":
        log.warning("mixed_float16 is meant for GPUs and none is visible: TensorFlow's CPU float16 kernels are slow "
                    "fallbacks (convolutions about 3x slower than float32); use --precision mixed_bfloat16 on CPUs")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


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
