"""kerasdl.compat: every private Keras/TensorFlow name it uses is still there, in the shape it expects.

A Keras or TensorFlow release that moves or changes one fails here, naming it, instead of
somewhere inside a multi-worker fit or a mixed-precision run.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from kerasdl import compat


def _owner(path: str):
    module, _, attr = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("owner,name", [(o, n) for o, names in compat.PRIVATE.items() for n in names])
def test_every_private_name_compat_uses_still_exists(owner, name):
    import keras
    import tensorflow as tf

    where = _owner(owner)
    if owner == "keras.optimizers.Adam":  # the moment slots are instance attributes, made by build
        adam = keras.optimizers.Adam()
        adam.build([keras.Variable([1.0, 2.0])])
        assert hasattr(adam, name), (f"keras {keras.__version__}: Adam.{name} is gone; "
                                     "kerasdl.compat.fused_adam needs another way")
        return
    if name == "_distribute_strategy":  # an instance attribute, set by Trainer.__init__
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        assert hasattr(model, name), (f"keras {keras.__version__}: Model.{name} is gone; "
                                      "kerasdl.compat.multiworker_fit needs another way")
        return
    assert hasattr(where, name), (f"keras {keras.__version__} / tensorflow {tf.__version__}: {owner}.{name} is gone; "
                                  "kerasdl.compat needs another way (see its docstring for why it uses it)")


def test_private_signatures_are_the_ones_compat_calls():
    import keras
    from keras.src.backend.tensorflow import trainer

    assert list(inspect.signature(trainer.reduce_per_replica).parameters) == ["values", "strategy", "reduction"], \
        f"keras {keras.__version__} changed reduce_per_replica: review kerasdl.compat.multiworker_fit"
    assert list(inspect.signature(trainer._collective_all_reduce_multi_worker).parameters) == ["strategy"], \
        f"keras {keras.__version__} changed _collective_all_reduce_multi_worker: review kerasdl.compat"
    assert "data_batch" in inspect.signature(keras.Model._symbolic_build).parameters, \
        f"keras {keras.__version__}: Model._symbolic_build takes no data_batch; review kerasdl.compat"
    source = inspect.getsource(trainer.TensorFlowTrainer)
    assert "reduce_per_replica(" in source, \
        f"keras {keras.__version__}: the TF trainer no longer calls reduce_per_replica; the patch would do nothing"


def test_the_multiworker_patch_is_put_back_after_the_fit():
    import keras
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    strategy = tf.distribute.get_strategy()
    x, y = tf.zeros((2, 2)), tf.zeros((2, 1))
    with compat.multiworker_fit(model, strategy, x, y):
        assert trainer.reduce_per_replica is not original
    assert trainer.reduce_per_replica is original
    assert model.optimizer.built


def test_op_determinism_can_be_switched_back_off():
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # the check itself has no public API either

    tf.config.experimental.enable_op_determinism()
    compat.disable_op_determinism()
    assert not tf_config.is_op_determinism_enabled(), \
        f"tensorflow {tf.__version__}: disable_op_determinism no longer turns determinism off"


def _adam_run(fused: bool, epochs: int = 8):
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    adam = keras.optimizers.Adam(learning_rate=keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.5))
    model.compile(compat.fused_adam(adam) if fused else adam, "mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 3)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False)
    return model


def test_a_model_with_the_fused_adam_saves_and_loads_as_a_plain_adam(tmp_path):
    import keras
    import numpy as np

    fused = _adam_run(True, epochs=1)
    fused.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # no kerasdl object needed to load it
    assert type(loaded.optimizer) is keras.optimizers.Adam and "update_step" not in vars(loaded.optimizer)
    assert loaded.optimizer.get_config()["learning_rate"] == fused.optimizer.get_config()["learning_rate"]
    assert int(loaded.optimizer.iterations.numpy()) == int(fused.optimizer.iterations.numpy()) > 0
    for a, b in zip(loaded.optimizer.variables, fused.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the moments came back whole


def test_fused_adam_follows_keras_adam_and_runs_the_fused_kernel():
    import keras
    import numpy as np
    import tensorflow as tf

    start, stock, fused = _adam_run(False, 0), _adam_run(False), _adam_run(True)
    assert all(np.any(a != b) for a, b in zip(start.get_weights(), stock.get_weights()))  # 32 steps trained
    for a, b in zip(stock.get_weights(), fused.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)  # the same rule: only the rounding differs


    adam, w = compat.fused_adam(keras.optimizers.Adam()), tf.Variable([1.0, -2.0])
    adam.build([w])

    @tf.function
    def step():
        adam.apply_gradients([(tf.constant([0.5, 0.5]), w)])

    ops = {op.type for op in step.get_concrete_function().graph.get_operations()}
    assert "ResourceApplyAdam" in ops, sorted(ops)


def test_the_commands_run_tensorflow_with_onednn_unless_told_otherwise(tmp_path):
    """kerasdl.use_onednn in run_cli comes before TensorFlow is imported (no command imports it
    at module level); a command may choose Eigen's kernels (the toy's), and a user's explicit
    TF_ENABLE_ONEDNN_OPTS wins over either choice."""
    import os
    import subprocess
    import sys

    script = tmp_path / "probe.py"
    script.write_text(
        "import sys\n"
        "import kerasdl.mnist, kerasdl.report, kerasdl.theory, kerasdl.toy, kerasdl.autoencoder, kerasdl.digits\n"
        "import kerasdl.predict, kerasdl.serve.app, tuning.__main__\n"
        "assert 'tensorflow' not in sys.modules, 'a command module imports TensorFlow before run_cli'\n"
        "from kerasdl.errors import run_cli\n"
        "def main(argv):\n"
        "    from tensorflow.python.util import _pywrap_util_port\n"
        "    print('onednn', _pywrap_util_port.IsMklEnabled())\n"
        "run_cli(main, 'probe', onednn=sys.argv[1] == 'on')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for setting, command, expected in ((None, "on", "True"), (None, "off", "False"), ("0", "on", "False")):
        env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "KERASDL_ONEDNN")}
        if setting is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = setting
        out = subprocess.run([sys.executable, str(script), command], cwd=root, env={**env, "PYTHONPATH": root},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"onednn {expected}" in out.stdout, (setting, command, out.stdout, out.stderr[-500:])


def test_a_setting_the_user_makes_after_kerasdl_chose_still_stands(monkeypatch):
    """A notebook calls use_onednn(), then the user sets TF_ENABLE_ONEDNN_OPTS=0 (`%env`): a later
    call, in this process or a child it starts, keeps the user's 0; kerasdl's own value it may change."""
    import os

    from kerasdl import use_onednn

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.delenv("KERASDL_ONEDNN", raising=False)
    use_onednn()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    use_onednn(False)  # still kerasdl's value: it may choose again (the report's toy worker)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"  # the user's now, though kerasdl had set 0
    use_onednn(False)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
