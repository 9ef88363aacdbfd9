"""Mixed precision on the training path, and Keras Tuner trials stopped at chance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kerasdl import training


@pytest.mark.parametrize("precision", training.PRECISIONS)
def test_a_short_run_under_each_policy_trains_exports_float32_and_agrees(precision, real_mnist, tmp_path):
    import keras
    import tensorflow as tf

    from kerasdl import mnist

    cfg = mnist.config_for("mlp", limit=2000, epochs=1, units=64, precision=precision, run_dir=tmp_path / "run",
                           export_dir=tmp_path / "models")
    summary = mnist.train(cfg, verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"  # put back after the run
    assert summary["precision"] == precision and summary["test_accuracy"] > 0.4  # chance: 0.1
    assert {r["precision"] for r in training.read_history(Path(summary["history_csv"]))} == {precision}
    card = json.loads(Path(summary["saved_model"], "model_card.json").read_text())
    assert card["results"]["precision"] == precision and card["training"]["precision"] == precision
    x = np.load(real_mnist)["x_test"][:16].reshape(16, 784).astype("float32") / 255.0
    loaded = tf.saved_model.load(summary["saved_model"])  # keep a reference: its variables must outlive the call
    served = loaded.serve(x)
    assert served.dtype == tf.float32
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(summary["keras_model"])
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]  # optimizer state loads whole
    if precision == "mixed_float16":  # loss scaling, and it is what the .keras file brings back
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    if precision != "float32":
        assert model.get_layer("hidden1").compute_dtype != "float32"  # the policy did apply
    assert model.get_layer("softmax").compute_dtype == "float32"
    np.testing.assert_allclose(served.numpy(), model.predict(x, verbose=0), atol=2e-3)
    np.testing.assert_allclose(served.numpy().sum(axis=1), 1.0, atol=1e-3)


def test_a_policy_that_will_be_slow_here_says_so_once(caplog):
    """mixed_float16 without a GPU runs TensorFlow's slow CPU float16 kernels: one warning
    naming the policy to use instead; float32 warns about nothing."""
    import logging

    import tensorflow as tf

    with caplog.at_level(logging.WARNING, logger="kerasdl.devices"):
        with training.precision_policy("float32"):
            pass
        assert caplog.records == []
        with training.precision_policy("mixed_float16"):
            pass
    if tf.config.list_logical_devices("GPU"):
        assert caplog.records == []
    else:
        assert len(caplog.records) == 1 and "mixed_bfloat16" in caplog.records[0].getMessage()


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown precision"):
        with training.precision_policy("float8"):
            pass


@pytest.mark.parametrize("cpu,gpu,want", [(True, False, "mixed_bfloat16"), (False, True, "mixed_bfloat16"),
                                           (False, False, "float32"), (None, False, "float32")])
def test_precision_auto_picks_bfloat16_only_where_the_hardware_computes_it(cpu, gpu, want, monkeypatch):
    import kerasdl
    from kerasdl import mnist

    monkeypatch.setattr(kerasdl, "cpu_has_bf16", lambda: cpu)
    monkeypatch.setattr(kerasdl, "gpu_has_bf16", lambda: gpu)
    args = mnist.parser().parse_args(["mlp", "--precision", "auto"])
    assert args.precision == want  # resolved at parse time: the summary records the policy that ran
    assert mnist.parser().parse_args(["mlp", "--precision", "mixed_float16"]).precision == "mixed_float16"
    with pytest.raises(SystemExit):
        mnist.parser().parse_args(["mlp", "--precision", "float8"])


class _Model:
    stop_training = False


@pytest.mark.parametrize("curve,stops", [
    ([0.10, 0.11, 0.09, 0.10, 0.12, 0.10], True),   # at chance throughout: stopped after epoch 5
    ([0.10, 0.10, 0.35, 0.10, 0.10, 0.10], False),  # learned a little once: runs on
    ([0.90, 0.95, 0.10, 0.10, 0.10, 0.10], False),  # learned, then collapsed: the write-up's question
    ([float("nan")] * 6, True),                       # diverged to NaN: chance
], ids=["chance", "briefly-above", "collapse", "nan"])
def test_stop_at_chance_looks_at_the_first_five_epochs_only(curve, stops):
    from tuning.search import StopAtChance

    rule = StopAtChance()
    rule.set_model(_Model())
    for epoch, accuracy in enumerate(curve):
        rule.on_epoch_end(epoch, {"val_accuracy": accuracy})
        if rule.model.stop_training:
            break
    assert rule.stopped is stops
    assert (epoch + 1 == 5) if stops else (epoch + 1 == len(curve))


def test_a_search_stops_an_absurd_rate_and_keeps_one_that_learns(real_mnist, tmp_path):
    from tuning.search import SearchConfig, search

    cfg = SearchConfig(kind="lr", lrs=(1e-2, 10.0), epochs=6, limit=1500, units=32, run_root=tmp_path / "runs",
                       export_dir=tmp_path / "models")
    summary = search(cfg)
    trials = {t["hyperparameters"]["lr"]: t for t in summary["trials"]}
    assert trials[10.0]["stopped_at_chance"] and trials[10.0]["epochs_run"] == 5
    assert not trials[0.01]["stopped_at_chance"] and trials[0.01]["epochs_run"] == 6
    table = Path(summary["table_md"]).read_text()
    assert "stopped at chance" in table.splitlines()[0]
    assert sum(line.count("| yes |") for line in table.splitlines()[2:]) >= 1
    from kerasdl import claims

    lr10 = claims.lr_10_at_chance({"tuning_lr": summary})
    assert lr10.verdict == "holds" and "stopped at chance after 5 epochs" in lr10.evidence
