"""The toy convnet's forward and backward pass written out by hand in NumPy (the core exercise).

Weights use Keras' layouts, so they can be copied to and from `models.toy_cnn`:
  filters K: (3, 1, 2)  width-3 kernels of the Conv1D, one input channel, two filters
  readout u: (4, 1)     Dense(1, no bias) on the flattened (2 positions x 2 filters) pool output

Loss: mean squared error over the batch + l2 * (sum K^2 + sum u^2), as Keras computes it
with L2 kernel regularisers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Cache:
    """What the forward pass keeps for the backward pass."""

    windows: np.ndarray  # (B, 4, 3)  the 3 inputs each conv output position sees
    z: np.ndarray  # (B, 4, 2)        pre-activations
    winner: np.ndarray  # (B, 2, 2)   which of the pool's two positions (0 or 1) was the max
    pooled: np.ndarray  # (B, 4)      flattened pool output


def forward(x: np.ndarray, K: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Predictions (B,) of the toy convnet for inputs x (B, 4)."""
    padded = np.pad(x, ((0, 0), (1, 1)))  # 'same' padding for width 3
    windows = np.stack([padded[:, t:t + 3] for t in range(4)], axis=1)  # (B, 4, 3)
    z = np.einsum("btk,kf->btf", windows, K[:, 0, :])  # cross-correlation, as Keras' Conv1D
    h = np.maximum(z, 0.0)
    pairs = h.reshape(len(x), 2, 2, 2)  # (B, pool window j, position within window, filter)
    winner = pairs.argmax(axis=2)  # (B, 2, 2)
    pooled = pairs.max(axis=2).reshape(len(x), 4)  # flatten in (j, filter) order, as Keras' Flatten
    return pooled @ u[:, 0], Cache(windows, z, winner, pooled)


def loss(x, y, K, u, l2: float = 0.0) -> float:
    pred, _ = forward(x, K, u)
    return float(np.mean((pred - y) ** 2) + l2 * (np.sum(K ** 2) + np.sum(u ** 2)))


def backward(x, y, K, u, l2: float = 0.0) -> tuple[float, np.ndarray, np.ndarray]:
    """Loss and its gradients with respect to K (3, 1, 2) and u (4, 1), vectorised over the batch."""
    pred, c = forward(x, K, u)
    batch = len(x)
    d_pred = 2.0 * (pred - y) / batch  # d mean((pred - y)^2) / d pred
    d_u = c.pooled.T @ d_pred[:, None] + 2.0 * l2 * u  # pred = pooled @ u
    d_pooled = d_pred[:, None] * u[:, 0][None, :]  # (B, 4)
    # max-pool: the gradient flows only to the position that won each window
    d_pairs = np.zeros((batch, 2, 2, 2))
    b, j, f = np.indices(c.winner.shape)
    d_pairs[b, j, c.winner, f] = d_pooled.reshape(batch, 2, 2)
    d_z = d_pairs.reshape(batch, 4, 2) * (c.z > 0)  # ReLU passes gradient where it was active
    d_K = np.einsum("btk,btf->kf", c.windows, d_z)[:, None, :] + 2.0 * l2 * K
    total = float(np.mean((pred - y) ** 2) + l2 * (np.sum(K ** 2) + np.sum(u ** 2)))
    return total, d_K, d_u


def finite_difference(x, y, K, u, l2: float = 0.0, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Central finite-difference gradients of `loss` with respect to K and u."""
    grads = []
    for which in (K, u):
        g = np.zeros_like(which)
        for idx in np.ndindex(which.shape):
            saved = which[idx]
            which[idx] = saved + eps
            up = loss(x, y, K, u, l2)
            which[idx] = saved - eps
            down = loss(x, y, K, u, l2)
            which[idx] = saved
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    return grads[0], grads[1]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|, |b|), elementwise, guarded against 0/0."""
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)))


def sgd(x, y, K, u, lr: float, l2: float, iterations: int, batch_size: int, seed: int = 0,
        on_step=None) -> tuple[np.ndarray, np.ndarray]:
    """Plain minibatch SGD with the hand-written gradients; `on_step(i, K, u)` is called after each step."""
    rng = np.random.default_rng(seed)
    K, u = K.copy(), u.copy()
    order = rng.permutation(len(x))
    for i in range(iterations):
        start = (i * batch_size) % len(x)
        if start + batch_size > len(x):
            order, start = rng.permutation(len(x)), 0
        rows = order[start:start + batch_size]
        _, d_K, d_u = backward(x[rows], y[rows], K, u, l2)
        K -= lr * d_K
        u -= lr * d_u
        if on_step is not None:
            on_step(i, K, u)
    return K, u
