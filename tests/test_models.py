"""kerasdl.models: the classifiers have the write-up's structure and output shapes."""

from __future__ import annotations

import numpy as np
import pytest
from keras import layers

from kerasdl import models


@pytest.mark.parametrize("name,shape", [("linear", (784,)), ("mlp", (784,)), ("cnn", (28, 28, 1))])
def test_classifiers_output_10_probabilities(name, shape):
    model = models.build(name)
    probs = model.predict(np.random.default_rng(0).random((3, *shape), dtype="float32"), verbose=0)
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_linear_is_softmax_regression():
    model = models.linear()
    assert [type(layer) for layer in model.layers] == [layers.Dense]
    assert model.count_params() == 784 * 10 + 10


def test_mlp_depth_width_and_activation_are_configurable():
    model = models.mlp(hidden_layers=3, units=32, activation="sigmoid")
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    assert len(dense) == 4 and [d.units for d in dense] == [32, 32, 32, 10]
    assert all(d.activation.__name__ == "sigmoid" for d in dense[:-1])
    assert len([layer for layer in models.mlp().layers if isinstance(layer, layers.Dense)]) == 2  # minimal depth


def test_cnn_has_convolutions_max_pooling_and_dropout():
    kinds = {type(layer) for layer in models.cnn().layers}
    assert {layers.Conv2D, layers.MaxPooling2D, layers.Dropout} <= kinds


def test_cnn_shift_augmentation_acts_only_while_training():
    import numpy as np

    model = models.cnn()
    assert isinstance(model.layers[0], layers.RandomTranslation)
    images = np.zeros((4, 28, 28, 1), "float32")
    images[:, 10:18, 12:16, 0] = 1.0  # a bar away from the border
    shift = model.layers[0]
    np.testing.assert_array_equal(shift(images, training=False), images)  # inference: untouched
    moved = [not np.array_equal(shift(images, training=True), images) for _ in range(5)]
    assert any(moved)  # training: shifted images, same ink
    np.testing.assert_allclose(np.asarray(shift(images, training=True)).sum(axis=(1, 2, 3)), images.sum(axis=(1, 2, 3)), rtol=0.05)
    assert not any(isinstance(layer, layers.RandomTranslation) for layer in models.cnn(shift=0).layers)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        models.build("resnet")
    with pytest.raises(ValueError, match="unknown optimizer"):
        models.optimizer("rmsprop")


def test_sgd_with_momentum_and_cosine_schedule():
    opt = models.optimizer("sgd", models.learning_rate(0.1, "cosine", decay_steps=10), momentum=0.9)
    assert opt.momentum == 0.9
    assert float(opt.learning_rate) == pytest.approx(0.1)  # step 0: the peak
    opt.iterations.assign(5)
    assert float(opt.learning_rate) == pytest.approx(0.1 * (0.01 + 0.99 * 0.5))  # halfway down the cosine
    opt.iterations.assign(10)
    assert float(opt.learning_rate) == pytest.approx(0.1 * 0.01)  # the end: alpha = 1% of the peak
