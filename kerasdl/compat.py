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
    "keras.optimizers.Adam": ("_momentums", "_velocities", "_get_variable_index"),
}


def disable_op_determinism() -> None:
    """Turn op determinism back off. TensorFlow exports `tf.config.experimental.enable_op_determinism`
    but no public switch back, and one process may run a deterministic float32 fit and then a
    mixed-precision one (tests, the report, notebooks), which must not pay for determinism."""
    from tensorflow.python.framework import config as tf_config

    tf_config.disable_op_determinism()


def fused_adam(optimizer):
    """`optimizer` (a `keras.optimizers.Adam`), its update run by TensorFlow's fused kernel.

    Keras 3.15's Adam writes its update as about ten separate element-wise ops, each a pass
    over the weights and its two moment slots; TensorFlow's `ResourceApplyAdam` computes the
    same formula (m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)) in one pass. On our 2-core EPYC
    a 784-512-10 MLP's epoch costs 0.84x the CPU time it does with Keras' update
    (`python bench/kernels.py`, docs/performance.md). The result rounds differently in the last bits
    (a long run drifts within run-to-run noise), not in meaning; the same seed still gives
    bit-identical weights run after run.

    Only the instance's `update_step` is replaced, so a saved model records and reloads a plain
    Adam. It reads the moment slots through Adam's private `_momentums`, `_velocities` and
    `_get_variable_index`, and hands anything the kernel does not cover to Keras' own step:
    AMSGrad, sparse gradients, non-float32 weights, and updates under a tf.distribute strategy
    (whose mirrored slots are not plain resource variables).
    """
    import types

    import keras
    import tensorflow as tf

    def update_step(self, gradient, variable, learning_rate):
        if (self.amsgrad or isinstance(gradient, tf.IndexedSlices) or tf.distribute.has_strategy()
                or variable.dtype != tf.float32):
            return keras.optimizers.Adam.update_step(self, gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index].value, self._velocities[index].value
        weights = variable.value if isinstance(variable, keras.Variable) else variable
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1, beta_2 = tf.cast(self.beta_1, tf.float32), tf.cast(self.beta_2, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=weights.handle, m=m.handle, v=v.handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, tf.float32), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, tf.float32), grad=tf.cast(gradient, tf.float32))

    optimizer.update_step = types.MethodType(update_step, optimizer)
    return optimizer


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
