"""Fully connected generator and encoder for permutation-invariant MNIST (ALAE paper, sec. 5.1)."""
from __future__ import annotations

import keras
import tensorflow as tf

from alae_tf.layers import EqualizedDense


def _stack(hidden: tuple[int, ...], out: int, prefix: str) -> list[EqualizedDense]:
    layers = [EqualizedDense(h, activation="lrelu", name=f"{prefix}{i}") for i, h in enumerate(hidden)]
    return layers + [EqualizedDense(out, name=f"{prefix}{len(hidden)}")]


@keras.saving.register_keras_serializable(package="alae_tf")
class MLPGenerator(keras.layers.Layer):
    """G: w -> latent -> 1024 -> 1024 -> H*W*C image (linear output), one style slot."""

    def __init__(self, resolution: int, latent_size: int, channels: int = 1,
                 hidden: tuple[int, ...] = (1024, 1024), **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.latent_size, self.channels = resolution, latent_size, channels
        self.hidden = tuple(hidden)
        self.num_styles = 1
        self.layer_count = 1
        self.dense = _stack(self.hidden, resolution * resolution * channels, "dense")

    @property
    def top_lod(self) -> int:
        return 0

    def build(self, *args, **kwargs):
        self.built = True  # sublayers build on their first call

    def call(self, styles, lod: int | None = None, alpha=1.0, noise=True):
        x = styles[:, 0] if len(styles.shape) == 3 else styles
        for layer in self.dense:
            x = layer(x)
        return tf.reshape(x, [-1, self.resolution, self.resolution, self.channels])

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "latent_size": self.latent_size,
                "channels": self.channels, "hidden": list(self.hidden)}


@keras.saving.register_keras_serializable(package="alae_tf")
class MLPEncoder(keras.layers.Layer):
    """E: image -> H*W*C -> 1024 -> 1024 -> w (linear output)."""

    def __init__(self, resolution: int, latent_size: int, channels: int = 1,
                 hidden: tuple[int, ...] = (1024, 1024), **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.latent_size, self.channels = resolution, latent_size, channels
        self.hidden = tuple(hidden)
        self.layer_count = 1
        self.dense = _stack(self.hidden, latent_size, "dense")

    @property
    def top_lod(self) -> int:
        return 0

    def build(self, *args, **kwargs):
        self.built = True  # sublayers build on their first call

    def call(self, images, lod: int | None = None, alpha=1.0):
        x = tf.reshape(images, [-1, self.resolution * self.resolution * self.channels])
        for layer in self.dense:
            x = layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "latent_size": self.latent_size,
                "channels": self.channels, "hidden": list(self.hidden)}
