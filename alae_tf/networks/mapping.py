"""Mapping network F (z -> w) and the discriminator head D (w -> logit) of ALAE."""
from __future__ import annotations

import keras
import tensorflow as tf

from alae_tf.layers import EqualizedDense, PixelNorm


@keras.saving.register_keras_serializable(package="alae_tf")
class Mapping(keras.layers.Layer):
    """F: pixel-normalised z through ``num_layers`` equalized Dense + leaky ReLU layers."""

    def __init__(self, latent_size: int, num_layers: int = 8, lr_multiplier: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.latent_size = latent_size
        self.num_layers = num_layers
        self.lr_multiplier = lr_multiplier
        self.norm = PixelNorm()
        self.dense = [
            EqualizedDense(latent_size, lr_multiplier=lr_multiplier, activation="lrelu", name=f"dense{i}")
            for i in range(num_layers)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense:
            layer.build(shape)
            shape = shape[:-1] + (self.latent_size,)
        self.built = True

    def call(self, z):
        x = self.norm(z)
        for layer in self.dense:
            x = layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size,
                "num_layers": self.num_layers, "lr_multiplier": self.lr_multiplier}


@keras.saving.register_keras_serializable(package="alae_tf")
class DiscriminatorHead(keras.layers.Layer):
    """D: equalized Dense layers on w ending in one logit; affine, as in the ALAE release."""

    def __init__(self, latent_size: int, num_layers: int = 3, lr_multiplier: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.latent_size = latent_size
        self.num_layers = num_layers
        self.lr_multiplier = lr_multiplier
        sizes = [latent_size] * (num_layers - 1) + [1]
        self.dense = [
            EqualizedDense(units, lr_multiplier=lr_multiplier, name=f"dense{i}")
            for i, units in enumerate(sizes)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.built = True

    def call(self, w):
        x = w
        for layer in self.dense:
            x = layer(x)
        return tf.squeeze(x, axis=-1)

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size,
                "num_layers": self.num_layers, "lr_multiplier": self.lr_multiplier}
