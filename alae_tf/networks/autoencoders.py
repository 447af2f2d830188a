"""Encoders and decoders of the autoencoder baselines (ae, dae, sae, vae): MLP and convolutional.

An encoder maps NHWC images to a code of ``code_size`` units (a VAE's encoder outputs the mean and
the log-variance side by side, ``2 * latent_size``); a decoder maps ``latent_size`` codes back to
NHWC images with a linear output. A tied MLP decoder owns only biases: its kernels are the
encoder's, transposed, passed in at call time (so the pair really holds one kernel per layer).
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

CODE_ACTIVATIONS = ("linear", "sigmoid")


def conv_filters(resolution: int, start_channels: int, max_channels: int) -> list[int]:
    """Feature maps of the stride-2 stages from ``resolution`` down to 4x4, top first."""
    stages = int(math.log2(resolution)) - 2
    return [min(start_channels * 2 ** i, max_channels) for i in range(stages)]


def _check_resolution(resolution: int):
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of 2 of at least 4, got {resolution}")


@keras.saving.register_keras_serializable(package="alae_tf")
class DenseEncoder(keras.layers.Layer):
    """Images -> flatten -> ``hidden`` (ReLU) -> code (``code_activation``)."""

    def __init__(self, resolution: int, channels: int, hidden: tuple[int, ...], code_size: int,
                 code_activation: str = "linear", **kwargs):
        super().__init__(**kwargs)
        if code_activation not in CODE_ACTIVATIONS:
            raise ValueError(f"code_activation must be one of {CODE_ACTIVATIONS}, got {code_activation!r}")
        self.resolution, self.channels = resolution, channels
        self.hidden, self.code_size, self.code_activation = tuple(hidden), code_size, code_activation
        self.dense = [keras.layers.Dense(h, activation="relu", name=f"dense{i}")
                      for i, h in enumerate(self.hidden)]
        self.dense.append(keras.layers.Dense(code_size, activation=code_activation,
                                             name=f"dense{len(self.hidden)}"))

    def build(self, input_shape):
        size = self.resolution * self.resolution * self.channels
        for layer in self.dense:
            layer.build((None, size))
            size = layer.units
        self.built = True

    def call(self, images):
        x = tf.reshape(images, [-1, self.resolution * self.resolution * self.channels])
        for layer in self.dense:
            x = layer(x)
        return x

    def kernels(self) -> list:
        """The kernels image -> code, in order (a tied decoder uses them transposed)."""
        return [layer.kernel for layer in self.dense]

    # One layer at a time, for greedy layer-wise training (layer 0 reads the flattened pixels).
    def flatten(self, images):
        return tf.reshape(images, [-1, self.resolution * self.resolution * self.channels])

    def layer(self, index: int, x):
        """Layer ``index`` (0: pixels -> first hidden) on flat inputs."""
        return self.dense[index](x)

    def layer_variables(self, index: int) -> list:
        return list(self.dense[index].trainable_variables)

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "channels": self.channels,
                "hidden": list(self.hidden), "code_size": self.code_size,
                "code_activation": self.code_activation}


@keras.saving.register_keras_serializable(package="alae_tf")
class DenseDecoder(keras.layers.Layer):
    """Code -> reversed ``hidden`` (ReLU) -> H*W*C (linear) -> NHWC.

    ``tied=True``: the layer owns only biases; ``call(codes, kernels=encoder.kernels())`` uses the
    encoder's kernels transposed, last first.
    """

    def __init__(self, resolution: int, channels: int, hidden: tuple[int, ...], latent_size: int,
                 tied: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.channels = resolution, channels
        self.hidden, self.latent_size, self.tied = tuple(hidden), latent_size, bool(tied)
        self.sizes = list(reversed(self.hidden)) + [resolution * resolution * channels]
        if not self.tied:
            self.dense = [keras.layers.Dense(s, activation="relu" if i < len(self.hidden) else None,
                                             name=f"dense{i}") for i, s in enumerate(self.sizes)]

    def build(self, input_shape):
        if self.tied:
            self.biases = [self.add_weight(shape=(s,), initializer="zeros", name=f"bias{i}")
                           for i, s in enumerate(self.sizes)]
        else:
            size = self.latent_size
            for layer in self.dense:
                layer.build((None, size))
                size = layer.units
        self.built = True

    def call(self, codes, kernels=None):
        x = codes
        if self.tied:
            if kernels is None or len(kernels) != len(self.sizes):
                raise ValueError(f"a tied decoder needs the encoder's {len(self.sizes)} kernels")
            for i, (kernel, bias) in enumerate(zip(reversed(kernels), self.biases)):
                x = tf.matmul(x, tf.cast(kernel, x.dtype), transpose_b=True) + tf.cast(bias, x.dtype)
                if i < len(self.hidden):
                    x = tf.nn.relu(x)
        else:
            for layer in self.dense:
                x = layer(x)
        return tf.reshape(x, [-1, self.resolution, self.resolution, self.channels])

    # One layer at a time, for greedy layer-wise training. Layer ``index`` counts from the code:
    # 0 maps the code to the last hidden layer, len(hidden) the first hidden layer to the pixels
    # (flat, linear); every other layer has a ReLU.
    def layer(self, index: int, x, kernel=None):
        """Layer ``index`` on flat inputs; a tied decoder takes the encoder's kernel of the pair."""
        if self.tied:
            if kernel is None:
                raise ValueError("a tied decoder layer needs the encoder's kernel of its pair")
            x = tf.matmul(x, tf.cast(kernel, x.dtype), transpose_b=True) + tf.cast(self.biases[index], x.dtype)
            return tf.nn.relu(x) if index < len(self.hidden) else x
        return self.dense[index](x)

    def layer_variables(self, index: int) -> list:
        """The variables layer ``index`` owns (a tied layer: its bias only)."""
        return [self.biases[index]] if self.tied else list(self.dense[index].trainable_variables)

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "channels": self.channels,
                "hidden": list(self.hidden), "latent_size": self.latent_size, "tied": self.tied}


@keras.saving.register_keras_serializable(package="alae_tf")
class ConvEncoder(keras.layers.Layer):
    """Images -> [conv 4x4 stride 2, leaky ReLU 0.2] down to 4x4 -> flatten -> Dense code."""

    def __init__(self, resolution: int, channels: int, code_size: int, start_channels: int = 32,
                 max_channels: int = 256, code_activation: str = "linear", **kwargs):
        super().__init__(**kwargs)
        _check_resolution(resolution)
        if code_activation not in CODE_ACTIVATIONS:
            raise ValueError(f"code_activation must be one of {CODE_ACTIVATIONS}, got {code_activation!r}")
        self.resolution, self.channels, self.code_size = resolution, channels, code_size
        self.start_channels, self.max_channels = start_channels, max_channels
        self.code_activation = code_activation
        self.filters = conv_filters(resolution, start_channels, max_channels)
        self.convs = [keras.layers.Conv2D(f, 4, strides=2, padding="same", name=f"conv{i}")
                      for i, f in enumerate(self.filters)]
        self.code = keras.layers.Dense(code_size, activation=code_activation, name="code")

    def build(self, input_shape):
        shape, size = (None, self.resolution, self.resolution, self.channels), self.resolution
        for conv in self.convs:
            conv.build(shape)
            size //= 2
            shape = (None, size, size, conv.filters)
        self.code.build((None, 16 * (self.filters[-1] if self.filters else self.channels)))
        self.built = True

    def call(self, images):
        x = images
        for conv in self.convs:
            x = tf.nn.leaky_relu(conv(x), 0.2)
        return self.code(tf.reshape(x, [-1, 16 * x.shape[-1]]))

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "channels": self.channels,
                "code_size": self.code_size, "start_channels": self.start_channels,
                "max_channels": self.max_channels, "code_activation": self.code_activation}


@keras.saving.register_keras_serializable(package="alae_tf")
class ConvDecoder(keras.layers.Layer):
    """Code -> Dense 4x4xF (leaky ReLU 0.2) -> [transposed conv 4x4 stride 2] up to the
    resolution, leaky ReLU between them, the last one to the image channels (linear)."""

    def __init__(self, resolution: int, channels: int, latent_size: int, start_channels: int = 32,
                 max_channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        _check_resolution(resolution)
        self.resolution, self.channels, self.latent_size = resolution, channels, latent_size
        self.start_channels, self.max_channels = start_channels, max_channels
        filters = conv_filters(resolution, start_channels, max_channels)
        self.base = filters[-1] if filters else channels
        self.fc = keras.layers.Dense(16 * self.base, name="fc")
        outs = list(reversed(filters))[1:] + [channels] if filters else []
        self.deconvs = [keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same", name=f"deconv{i}")
                        for i, f in enumerate(outs)]

    def build(self, input_shape):
        self.fc.build((None, self.latent_size))
        shape, size = (None, 4, 4, self.base), 4
        for deconv in self.deconvs:
            deconv.build(shape)
            size *= 2
            shape = (None, size, size, deconv.filters)
        self.built = True

    def call(self, codes):
        x = self.fc(codes)
        if not self.deconvs:
            return tf.reshape(x, [-1, 4, 4, self.channels])
        x = tf.reshape(tf.nn.leaky_relu(x, 0.2), [-1, 4, 4, self.base])
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x)
            if i < len(self.deconvs) - 1:
                x = tf.nn.leaky_relu(x, 0.2)
        return x

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "channels": self.channels,
                "latent_size": self.latent_size, "start_channels": self.start_channels,
                "max_channels": self.max_channels}
