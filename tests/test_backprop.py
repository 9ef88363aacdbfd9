"""kerasdl.backprop: the hand-written toy-convnet gradients against finite differences and TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasdl import backprop, data, models, training

L2 = 1e-3


@pytest.fixture
def batch_and_weights():
    toy = data.toy_dataset("f2", n_train=48, n_test=1)
    x, y = toy.split.x_train.astype("float64"), toy.split.y_train.astype("float64")
    rng = np.random.default_rng(5)
    return x, y, rng.normal(0, 0.7, (3, 1, 2)), rng.normal(0, 0.7, (4, 1))


def test_hand_gradients_match_central_finite_differences(batch_and_weights):
    x, y, K, u = batch_and_weights
    _, d_K, d_u = backprop.backward(x, y, K, u, L2)
    fd_K, fd_u = backprop.finite_difference(x, y, K, u, L2)
    assert backprop.relative_error(d_K, fd_K) < 1e-6
    assert backprop.relative_error(d_u, fd_u) < 1e-6


def test_hand_gradients_match_tensorflow_on_the_keras_model(batch_and_weights):
    x, y, K, u = batch_and_weights
    model = models.toy_cnn(l2=L2)
    model.get_layer("filters").kernel.assign(K.astype("float32"))
    model.get_layer("u").kernel.assign(u.astype("float32"))
    with tf.GradientTape() as tape:
        pred = model(tf.constant(x, tf.float32))[:, 0]
        loss = tf.reduce_mean((pred - tf.constant(y, tf.float32)) ** 2) + tf.add_n(model.losses)
    tf_K, tf_u = tape.gradient(loss, [model.get_layer("filters").kernel, model.get_layer("u").kernel])
    hand_loss, d_K, d_u = backprop.backward(x, y, K, u, L2)
    assert hand_loss == pytest.approx(float(loss), rel=1e-5)
    np.testing.assert_allclose(backprop.forward(x, K, u)[0], pred.numpy(), rtol=1e-4, atol=1e-5)
    assert backprop.relative_error(d_K, tf_K.numpy()) < 1e-3
    assert backprop.relative_error(d_u, tf_u.numpy()) < 1e-3


def test_the_check_catches_a_sign_slip_and_an_index_slip(batch_and_weights):
    x, y, K, u = batch_and_weights
    _, d_K, d_u = backprop.backward(x, y, K, u, L2)
    fd_K, _ = backprop.finite_difference(x, y, K, u, L2)
    sign_slip = d_K.copy()
    sign_slip[1, 0, 0] *= -1
    index_slip = d_K[::-1].copy()  # kernel taps reversed: convolution instead of cross-correlation
    assert backprop.relative_error(sign_slip, fd_K) > 1e-2
    assert backprop.relative_error(index_slip, fd_K) > 1e-2


def test_numpy_sgd_with_hand_gradients_learns_max(batch_and_weights):
    toy = data.toy_dataset("f1", n_train=500, n_test=100)
    x, y = toy.split.x_train.astype("float64"), toy.split.y_train.astype("float64")
    training.seed_everything(1)
    K, u = (w.numpy().astype("float64") for w in models.toy_cnn().weights)
    start = backprop.loss(x, y, K, u)
    K, u = backprop.sgd(x, y, K, u, lr=0.02, l2=1e-4, iterations=800, batch_size=32)
    assert backprop.loss(x, y, K, u) < 0.5 * start
