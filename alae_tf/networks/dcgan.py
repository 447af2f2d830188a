"""DCGAN generator and discriminator (Radford et al. 2016), with synchronized batch norm.

Generator: z -> dense 4x4xC0 -> 5x5 transposed convs (stride 2) halving the feature maps ->
5x5 transposed conv to the image channels, tanh; batch norm + ReLU after every layer but the last.
Discriminator, its mirror: 5x5 convs (stride 2) doubling the feature maps down to 4 x 4 -> dense
to one logit; leaky ReLU 0.2, batch norm on every conv but the first. Weights ~ N(0, 0.02).
``width`` is the feature maps next to the image (the paper's 64 x 64 networks: 128, i.e.
generator 1024 / 512 / 256 / 128), capped at ``max_width``.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from alae_tf.layers import lrelu
from alae_tf.networks import batch_norm


def _init():
    return keras.initializers.RandomNormal(stddev=0.02)


def check_resolution(resolution: int):
    if resolution < 8 or resolution > 1024 or resolution & (resolution - 1):
        raise ValueError(f"--resolution must be a power of two from 8 to 1024 for --model=dcgan, got {resolution}")


def feature_maps(resolution: int, width: int, max_width: int) -> list[int]:
    """Feature maps at 4x4, 8x8, ..., R/2 x R/2 (doubling towards 4 x 4, capped)."""
    check_resolution(resolution)
    n = int(math.log2(resolution // 4))
    return [min(max_width, width * 2 ** (n - 1 - i)) for i in range(n)]


class _Net(keras.layers.Layer):
    def __init__(self, resolution: int, channels: int, width: int = 64, max_width: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.channels = int(resolution), int(channels)
        self.width, self.max_width = int(width), int(max_width)
        self.maps = feature_maps(self.resolution, self.width, self.max_width)

    def build(self, *args, **kwargs):
        self.built = True  # sublayers build on their first call

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "channels": self.channels,
                "width": self.width, "max_width": self.max_width}


@keras.saving.register_keras_serializable(package="alae_tf")
class DCGANGenerator(_Net):
    """z (N, latent_size) -> images (N, R, R, channels) in [-1, 1]."""

    def __init__(self, resolution: int, channels: int, latent_size: int, width: int = 64,
                 max_width: int = 1024, **kwargs):
        super().__init__(resolution, channels, width, max_width, **kwargs)
        self.latent_size = int(latent_size)
        self.dense = keras.layers.Dense(16 * self.maps[0], use_bias=False, kernel_initializer=_init(),
                                        name="dense")
        self.norms = [batch_norm(f"norm{i}") for i in range(len(self.maps))]
        self.convs = [keras.layers.Conv2DTranspose(m, 5, strides=2, padding="same", use_bias=False,
                                                   kernel_initializer=_init(), name=f"conv{i + 1}")
                      for i, m in enumerate(self.maps[1:])]
        self.to_image = keras.layers.Conv2DTranspose(channels, 5, strides=2, padding="same",
                                                     kernel_initializer=_init(), name="to_image")

    def call(self, z, training=False):
        x = tf.reshape(self.dense(z), [-1, 4, 4, self.maps[0]])
        x = tf.nn.relu(self.norms[0](x, training=training))
        for conv, norm in zip(self.convs, self.norms[1:]):
            x = tf.nn.relu(norm(conv(x), training=training))
        return tf.tanh(tf.cast(self.to_image(x), tf.float32))

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size}


@keras.saving.register_keras_serializable(package="alae_tf")
class DCGANDiscriminator(_Net):
    """Images (N, R, R, channels) -> logits (N,)."""

    def __init__(self, resolution: int, channels: int, width: int = 64, max_width: int = 1024, **kwargs):
        super().__init__(resolution, channels, width, max_width, **kwargs)
        maps = self.maps[::-1]  # R/2 ... 4
        self.convs = [keras.layers.Conv2D(m, 5, strides=2, padding="same", use_bias=i == 0,
                                          kernel_initializer=_init(), name=f"conv{i}")
                      for i, m in enumerate(maps)]
        self.norms = [batch_norm(f"norm{i}") for i in range(1, len(maps))]
        self.logit = keras.layers.Dense(1, kernel_initializer=_init(), name="logit")

    def call(self, images, training=False):
        x = lrelu(self.convs[0](images))
        for conv, norm in zip(self.convs[1:], self.norms):
            x = lrelu(norm(conv(x), training=training))
        x = tf.reshape(x, [-1, 16 * self.maps[0]])
        return tf.squeeze(tf.cast(self.logit(x), tf.float32), axis=-1)
