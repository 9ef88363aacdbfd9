"""The private Keras and TensorFlow API kerasdl cannot do without, and nothing else.

Each use says why no public API does the job. tests/test_compat.py checks every name and
signature used here against the installed Keras and TensorFlow, so a release that moves or
changes one fails there, by name, before it can break a run (setup.cfg pins the releases
these were checked against).
"""

from __future__ import annotations

import contextlib

# What tests/test_compat.py checks: module -> the private names used from it.
PRIVATE = {
    "tensorflow.python.framework.config": ("disable_op_determinism",),
    "keras.src.backend.tensorflow.trainer": ("reduce_per_replica", "_collective_all_reduce_multi_worker"),
    "keras.Model": ("_symbolic_build", "_distribute_strategy"),
}


def disable_op_determinism() -> None:
    """Turn op determinism back off. TensorFlow exports `tf.config.experimental.enable_op_determinism`
    but no public switch back, and one process may run a deterministic float32 fit and then a
    mixed-precision one (tests, the report, notebooks), which must not pay for determinism."""
    from tensorflow.python.framework import config as tf_config

    tf_config.disable_op_determinism()


@contextlib.contextmanager
def multiworker_fit(model, strategy, x, y):
    """Inside, `model.fit` runs under MultiWorkerMirroredStrategy; `x`, `y`: a small plain batch.

    Two things Keras 3.15 cannot do there through public API:
    - its TF trainer reduces per-replica scalar metrics with `axis=0`, which fails for scalars
      (keras-team/keras#20585), and no public hook reaches the reduction: `reduce_per_replica`, a
      module global looked up at each call, is replaced with one reducing with `axis=None`, and
      put back on the way out, so nothing else in the process sees the patch;
    - its symbolic build at the start of fit tries to reduce a distributed batch and fails: the
      metrics and optimizer are built here from the plain batch inside the strategy's scope
      (`Model._symbolic_build`), and `Model._distribute_strategy` is cleared so that fit takes the
      strategy from the scope it runs in instead of distributing the data a second time.
    """
    import keras
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica
    try:
        with strategy.scope():
            model._symbolic_build(data_batch=(x, y))
        model._distribute_strategy = None
        with strategy.scope():
            yield
    finally:
        trainer.reduce_per_replica = original
