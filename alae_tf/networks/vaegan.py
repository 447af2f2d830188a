"""VAE-GAN encoder, decoder and discriminator (Larsen et al. 2016, "Autoencoding beyond pixels
using a learned similarity metric"), with synchronized batch norm.

64 x 64 (the paper's CelebA networks): encoder 5x5 convs 64 / 128 / 256 (stride 2) -> dense 2048
-> mean and log-variance; decoder dense 8x8x256 -> 5x5 transposed convs 256 / 128 / 32 (stride 2)
-> 5x5 conv to the image channels, tanh; discriminator 5x5 conv 32 -> 5x5 convs 128 / 256 / 256
(stride 2) -> dense 512 -> 1 logit. The learned similarity is measured on the last conv's output
before its batch norm (the 4th conv at 64 x 64). Smaller images drop stages from the top, so the
code layer is always 8 x 8: 32 x 32 uses encoder 64 / 128, decoder dense 8x8x128 -> 128 / 32,
discriminator 32 -> 128 / 256 (feature layer: the 3rd conv); 16 x 16 keeps one stage.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from alae_tf.layers import lrelu
from alae_tf.networks import batch_norm

RESOLUTIONS = (16, 32, 64)
_ENCODER = (64, 128, 256)
_DECODER = (256, 128, 32)
_DISCRIMINATOR = (128, 256, 256)


def stages(resolution: int) -> int:
    """Stride-2 stages between the image and the 8 x 8 code layer."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"--resolution must be one of {', '.join(map(str, RESOLUTIONS))} for --model=vaegan, "
                         f"got {resolution}")
    return int(math.log2(resolution // 8))


def widths(resolution: int) -> dict[str, tuple[int, ...]]:
    """Feature maps of each network at ``resolution`` (the paper's at 64, top stages dropped below)."""
    n = stages(resolution)
    return {"encoder": _ENCODER[:n], "decoder": _DECODER[-n:], "discriminator": _DISCRIMINATOR[:n]}


class _Net(keras.layers.Layer):
    """Shared arguments and serialization of the three networks."""

    def __init__(self, resolution: int, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.channels = int(resolution), int(channels)
        self.widths = widths(self.resolution)

    def build(self, *args, **kwargs):
        self.built = True  # sublayers build on their first call

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "channels": self.channels}


@keras.saving.register_keras_serializable(package="alae_tf")
class VAEGANEncoder(_Net):
    """Images -> (mean, log-variance) of q(z | x), each (N, latent_size)."""

    def __init__(self, resolution: int, channels: int, latent_size: int, dense_units: int = 2048, **kwargs):
        super().__init__(resolution, channels, **kwargs)
        self.latent_size, self.dense_units = int(latent_size), int(dense_units)
        self.convs = [keras.layers.Conv2D(w, 5, strides=2, padding="same", use_bias=False, name=f"conv{i}")
                      for i, w in enumerate(self.widths["encoder"])]
        self.norms = [batch_norm(f"norm{i}") for i in range(len(self.convs))]
        self.dense = keras.layers.Dense(self.dense_units, use_bias=False, name="dense")
        self.dense_norm = batch_norm("dense_norm")
        self.head = keras.layers.Dense(2 * self.latent_size, name="head")

    def call(self, images, training=False):
        x = images
        for conv, norm in zip(self.convs, self.norms):
            x = lrelu(norm(conv(x), training=training))
        x = tf.reshape(x, [-1, 8 * 8 * self.widths["encoder"][-1]])
        x = lrelu(self.dense_norm(self.dense(x), training=training))
        mean, logvar = tf.split(tf.cast(self.head(x), tf.float32), 2, axis=-1)
        return mean, logvar

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size, "dense_units": self.dense_units}


@keras.saving.register_keras_serializable(package="alae_tf")
class VAEGANDecoder(_Net):
    """Codes (N, latent_size) -> images (N, R, R, channels) in [-1, 1]."""

    def __init__(self, resolution: int, channels: int, latent_size: int, **kwargs):
        super().__init__(resolution, channels, **kwargs)
        self.latent_size = int(latent_size)
        first = self.widths["encoder"][-1]
        self.dense = keras.layers.Dense(8 * 8 * first, use_bias=False, name="dense")
        self.dense_norm = batch_norm("dense_norm")
        self.convs = [keras.layers.Conv2DTranspose(w, 5, strides=2, padding="same", use_bias=False,
                                                   name=f"conv{i}")
                      for i, w in enumerate(self.widths["decoder"])]
        self.norms = [batch_norm(f"norm{i}") for i in range(len(self.convs))]
        self.to_image = keras.layers.Conv2D(channels, 5, padding="same", name="to_image")

    def call(self, codes, training=False):
        x = tf.nn.relu(self.dense_norm(self.dense(codes), training=training))
        x = tf.reshape(x, [-1, 8, 8, self.widths["encoder"][-1]])
        for conv, norm in zip(self.convs, self.norms):
            x = tf.nn.relu(norm(conv(x), training=training))
        return tf.tanh(tf.cast(self.to_image(x), tf.float32))

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size}


@keras.saving.register_keras_serializable(package="alae_tf")
class VAEGANDiscriminator(_Net):
    """Images -> (logits (N,), features (N, 8, 8, C)): the last conv's output before its batch norm."""

    def __init__(self, resolution: int, channels: int, dense_units: int = 512, **kwargs):
        super().__init__(resolution, channels, **kwargs)
        self.dense_units = int(dense_units)
        self.conv0 = keras.layers.Conv2D(32, 5, padding="same", name="conv0")
        self.convs = [keras.layers.Conv2D(w, 5, strides=2, padding="same", use_bias=False, name=f"conv{i + 1}")
                      for i, w in enumerate(self.widths["discriminator"])]
        self.norms = [batch_norm(f"norm{i + 1}") for i in range(len(self.convs))]
        self.dense = keras.layers.Dense(self.dense_units, use_bias=False, name="dense")
        self.dense_norm = batch_norm("dense_norm")
        self.logit = keras.layers.Dense(1, name="logit")

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return (8, 8, self.widths["discriminator"][-1])

    def call(self, images, training=False):
        x = tf.nn.relu(self.conv0(images))
        features = None
        for conv, norm in zip(self.convs, self.norms):
            features = conv(x)
            x = tf.nn.relu(norm(features, training=training))
        x = tf.reshape(x, [-1, 8 * 8 * self.widths["discriminator"][-1]])
        x = tf.nn.relu(self.dense_norm(self.dense(x), training=training))
        logits = tf.squeeze(tf.cast(self.logit(x), tf.float32), axis=-1)
        return logits, tf.cast(features, tf.float32)

    def get_config(self):
        return {**super().get_config(), "dense_units": self.dense_units}
