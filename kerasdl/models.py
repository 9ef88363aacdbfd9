"""Every Keras model of the write-up, as pure builder functions (no training, no I/O).

Classifiers take MNIST as float32 in [0, 1]: flat (N, 784) for `linear` and `mlp`,
(N, 28, 28, 1) for `cnn`; all end in a 10-way softmax. Output layers (softmax, sigmoid, the
autoencoder's 2-D code) always compute in float32, as Keras advises under a mixed-precision
policy (devices.precision_policy): the other layers follow the policy.
"""

from __future__ import annotations

import keras
from keras import layers

from kerasdl import compat

CLASSIFIERS = ("linear", "mlp", "cnn")
ACTIVATIONS = ("relu", "sigmoid")
OPTIMIZERS = ("adam", "sgd")


def linear() -> keras.Model:
    """Softmax regression: one Dense(10, softmax) on the 784 pixels."""
    return keras.Sequential(
        [keras.Input((784,)), layers.Dense(10, activation="softmax", dtype="float32", name="softmax")],
        name="linear",
    )


def mlp(hidden_layers: int = 1, units: int = 512, activation: str = "relu",
        kernel_initializer: str = "glorot_uniform") -> keras.Model:
    """A dense network: `hidden_layers` x Dense(units, activation), then softmax."""
    hidden = [
        layers.Dense(units, activation=activation, kernel_initializer=kernel_initializer, name=f"hidden{i + 1}")
        for i in range(hidden_layers)
    ]
    softmax = layers.Dense(10, activation="softmax", kernel_initializer=kernel_initializer, dtype="float32",
                           name="softmax")
    return keras.Sequential([keras.Input((784,)), *hidden, softmax], name="mlp")


@keras.saving.register_keras_serializable("kerasdl")
class SharedScaleReLU(layers.Layer):
    """relu(a * z) with one learned a = exp(log_scale) > 0 shared by every unit of the layer (section 1)."""

    def build(self, input_shape):
        self.log_scale = self.add_weight(shape=(), initializer="zeros", name="log_scale")

    def call(self, z):
        return keras.ops.relu(keras.ops.exp(self.log_scale) * z)

    @property
    def scale(self) -> float:
        return float(keras.ops.exp(self.log_scale))


@keras.saving.register_keras_serializable("kerasdl")
class SharedThresholdReLU(layers.Layer):
    """relu(z - t) with one learned threshold t shared by every unit of the layer (section 1)."""

    def build(self, input_shape):
        self.threshold = self.add_weight(shape=(), initializer="zeros", name="threshold")

    def call(self, z):
        return keras.ops.relu(z - self.threshold)


SHARED = ("relu", "scale", "threshold", "leaky")


def shared_activation(kind: str, name: str) -> layers.Layer:
    """The hidden activation with at most one learned parameter for the whole layer: plain ReLU,
    a shared scale, a shared threshold, or a shared leaky slope (z for z > 0, alpha z otherwise,
    alpha learned from 0.25; = max(z, alpha z) for alpha <= 1)."""
    if kind == "relu":
        return layers.ReLU(name=name)
    if kind == "scale":
        return SharedScaleReLU(name=name)
    if kind == "threshold":
        return SharedThresholdReLU(name=name)
    if kind == "leaky":
        return layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1], name=name)
    raise ValueError(f"unknown shared activation {kind!r}: use one of {SHARED}")


def mlp_shared(shared: str = "scale", hidden_layers: int = 1, units: int = 512,
               kernel_initializer: str = "glorot_uniform") -> keras.Model:
    """`mlp` with each hidden Dense followed by `shared_activation(shared)` instead of its own ReLU.

    The Dense layers have mlp's names and draw the same initial weights under the same seed
    (the shared parameters start at a constant), so the two train from the same point.
    """
    body = []
    for i in range(hidden_layers):
        body += [layers.Dense(units, kernel_initializer=kernel_initializer, name=f"hidden{i + 1}"),
                 shared_activation(shared, f"{shared}{i + 1}")]
    softmax = layers.Dense(10, activation="softmax", kernel_initializer=kernel_initializer, dtype="float32",
                           name="softmax")
    return keras.Sequential([keras.Input((784,)), *body, softmax], name=f"mlp_{shared}")


def scalar_net(shared: str = "leaky", units: int = 1) -> keras.Model:
    """R -> R through one hidden layer of `units` units: Dense -> shared_activation(shared) -> Dense(1)."""
    return keras.Sequential([keras.Input((1,)), layers.Dense(units, name="hidden1"),
                             shared_activation(shared, f"{shared}1"), layers.Dense(1, name="out")],
                            name=f"scalar_{shared}_{units}")


def cnn(filters: tuple[int, ...] = (32, 64), dense_units: int = 256, dropout: float = 0.25,
        shift: float = 0.05) -> keras.Model:
    """Conv(3x3, ReLU) -> MaxPool(2) per entry of `filters`, then a dropout-regularised dense head.

    While training, each image is first shifted at random by up to `shift` of its size
    (0.05: up to 1.4 pixels) in each direction; at inference the shift layer passes the
    image through unchanged. 0 turns it off.
    """
    body = [layers.RandomTranslation(shift, shift, fill_mode="constant", name="shift")] if shift else []
    for i, f in enumerate(filters):
        body += [
            layers.Conv2D(f, 3, activation="relu", name=f"conv{i + 1}"),  # 28 -> 26 -> pool 13 -> 11 -> pool 5
            layers.MaxPooling2D(2, name=f"pool{i + 1}"),
        ]
    head = [
        layers.Flatten(name="flatten"),
        layers.Dropout(dropout, name="dropout1"),
        layers.Dense(dense_units, activation="relu", name="dense"),
        layers.Dropout(dropout, name="dropout2"),
        layers.Dense(10, activation="softmax", dtype="float32", name="softmax"),
    ]
    return keras.Sequential([keras.Input((28, 28, 1)), *body, *head], name="cnn")


def optimizer(name: str = "adam", lr: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
              momentum: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam (the write-up's default) or SGD with optional momentum.

    Under the mixed_float16 policy it comes wrapped in Keras' LossScaleOptimizer. Keras would
    wrap it at compile time anyway, but then the saved .keras file records the inner optimizer
    only, and loading it drops the optimizer's state with a warning; wrapped here, the file
    records the wrapper and loads whole.
    """
    if name == "adam":  # TensorFlow's fused Adam kernel runs the update (compat.fused_adam: same rule, faster)
        opt = compat.fused_adam(keras.optimizers.Adam(learning_rate=lr))
    elif name == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    else:
        raise ValueError(f"unknown optimizer {name!r}: use one of {OPTIMIZERS}")
    if keras.config.dtype_policy().name == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def learning_rate(lr: float, schedule: str = "constant", decay_steps: int | None = None):
    """A constant rate, or cosine decay to 1% of `lr` over `decay_steps` optimizer steps."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, decay_steps or 1), alpha=0.01)
    raise ValueError(f"unknown schedule {schedule!r}: use 'constant' or 'cosine'")


def compile_classifier(model: keras.Model, optimizer_name: str = "adam", lr=1e-3, momentum: float = 0.0,
                       jit_compile: bool | str = "auto") -> keras.Model:
    """Sparse categorical cross-entropy with accuracy, the loss every classifier here trains on."""
    model.compile(
        optimizer=optimizer(optimizer_name, lr, momentum),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def toy_linear(l2: float = 0.0, kernel_initializer="glorot_uniform") -> keras.Model:
    """Section 2.4's linear baseline: Dense(1) on x in R^4."""
    reg = keras.regularizers.L2(l2) if l2 else None
    return keras.Sequential(
        [keras.Input((4,)), layers.Dense(1, kernel_initializer=kernel_initializer, kernel_regularizer=reg, name="w")],
        name="toy_linear",
    )


def toy_cnn(l2: float = 0.0, kernel_initializer="glorot_uniform") -> keras.Model:
    """Section 2.4's convnet: x as a length-4 signal -> Conv1D(2 filters, width 3, same, no bias)
    -> ReLU -> MaxPool1D(2) -> flatten (4 values) -> Dense(1, no bias) readout `u`."""
    reg = keras.regularizers.L2(l2) if l2 else None
    return keras.Sequential(
        [
            keras.Input((4,)),
            layers.Reshape((4, 1), name="signal"),  # (4,) -> 4 time steps, 1 channel
            layers.Conv1D(2, 3, padding="same", use_bias=False, kernel_initializer=kernel_initializer,
                          kernel_regularizer=reg, name="filters"),  # (4, 2)
            layers.ReLU(name="relu"),
            layers.MaxPooling1D(2, name="pool"),  # (2, 2)
            layers.Flatten(name="flatten"),  # (4,)
            layers.Dense(1, use_bias=False, kernel_initializer=kernel_initializer, kernel_regularizer=reg, name="u"),
        ],
        name="toy_cnn",
    )


def compile_regressor(model: keras.Model, lr: float = 0.01, momentum: float = 0.0) -> keras.Model:
    """SGD on squared loss (plus the layers' L2 penalties), reporting the plain MSE as a metric."""
    model.compile(optimizer=optimizer("sgd", lr, momentum), loss="mse", metrics=[keras.metrics.MeanSquaredError("mse")])
    return model


def autoencoder(arch: str = "deep", latent_dim: int = 2) -> keras.Model:
    """784 -> 2 -> 784. The full model is Sequential([encoder, decoder]), so
    `model.get_layer("encoder")` and `model.get_layer("decoder")` share its weights.

    deep: 784-512-128-2-128-512-784 (ReLU, linear code, sigmoid output); the write-up's fix.
    shallow: 784-2-784 in two dense layers; the write-up's first try.
    """
    widths = {"deep": (512, 128), "shallow": ()}[arch]
    encoder = keras.Sequential(
        [keras.Input((784,)), *[layers.Dense(w, activation="relu") for w in widths],
         layers.Dense(latent_dim, dtype="float32", name="latent")],
        name="encoder",
    )
    decoder = keras.Sequential(
        [keras.Input((latent_dim,)), *[layers.Dense(w, activation="relu") for w in reversed(widths)],
         layers.Dense(784, activation="sigmoid", dtype="float32", name="pixels")],
        name="decoder",
    )
    return keras.Sequential([keras.Input((784,)), encoder, decoder], name=f"autoencoder_{arch}")


BUILDERS = {"linear": linear, "mlp": mlp, "mlp_shared": mlp_shared, "cnn": cnn, "toy_linear": toy_linear,
            "toy_cnn": toy_cnn, "autoencoder": autoencoder}


def build(name: str, **hp) -> keras.Model:
    """The uncompiled model `name` with hyperparameters `hp` (the builder's keyword arguments)."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: use one of {', '.join(BUILDERS)}") from None
    return builder(**hp)
