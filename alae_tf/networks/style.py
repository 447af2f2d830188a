"""Progressive style generator G and style encoder E of StyleALAE, with fade-in between LODs.

LOD ``i`` is resolution ``4 * 2 ** i``. Both networks hold the variables of every LOD from the
start, so checkpoints and optimizers see one fixed set; ``lod`` is a Python int (one trace per
LOD) and ``alpha`` a tensor (no retrace while it moves).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from alae_tf.layers import (
    Bias, Blur, Downscale2D, EqualizedConv2D, EqualizedDense, FromRGB, InstanceNorm,
    NoiseInjection, StyleMod, ToRGB, Upscale2D, lrelu,
)
from alae_tf.networks import channels_at


def draw_noise(x, noise, index: int, batch=None):
    """The single-channel noise map of noise input ``index`` of a block, shaped like ``x``.

    ``noise`` is True (a stateful N(0, 1) draw), a stateless seed of shape [2] (reproducible:
    the map depends only on the seed and ``index``) or a sequence of given maps (N or 1, H, W, 1).
    ``batch`` overrides the batch size of a drawn map (1: one map shared by the batch).
    """
    if isinstance(noise, (list, tuple)):
        return tf.cast(noise[index], x.dtype)
    shape = tf.concat([[tf.shape(x)[0] if batch is None else batch], tf.shape(x)[1:3], [1]], axis=0)
    if isinstance(noise, bool):
        return tf.random.normal(shape, dtype=x.dtype)
    seed = tf.random.experimental.stateless_fold_in(noise, index)
    return tf.cast(tf.random.stateless_normal(shape, seed), x.dtype)


def _fold(noise, index: int):
    """Block ``index``'s share of ``noise``: its two given maps, or the seed folded with the index."""
    if isinstance(noise, (list, tuple)):
        return noise[2 * index:2 * index + 2]
    return noise if isinstance(noise, bool) else tf.random.experimental.stateless_fold_in(noise, index)


@keras.saving.register_keras_serializable(package="alae_tf")
class GeneratorBlock(keras.layers.Layer):
    """[learned 4x4 constant | up-conv + blur] -> noise, bias, lrelu, IN, style -> conv -> same."""

    def __init__(self, filters: int, first: bool, fused: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.first, self.fused = filters, first, fused
        if first:
            self.const = self.add_weight(shape=(1, 4, 4, filters), initializer="ones", name="const")
        else:
            self.conv0 = EqualizedConv2D(filters, 3, up=True, fused=fused, use_bias=False, name="conv0")
            self.blur = Blur(name="blur")
        self.conv1 = EqualizedConv2D(filters, 3, use_bias=False, name="conv1")
        self.noise0, self.noise1 = NoiseInjection(name="noise0"), NoiseInjection(name="noise1")
        self.bias0, self.bias1 = Bias(name="bias0"), Bias(name="bias1")
        self.norm = InstanceNorm(name="norm")
        self.style0, self.style1 = StyleMod(name="style0"), StyleMod(name="style1")

    def _post(self, x, w, noise_layer, bias, style, noise, index):
        if noise is not False:
            # The release adds the first noise of the 4x4 block to the constant before it is
            # broadcast to the batch: one map shared by every sample.
            batch = 1 if self.first and index == 0 else None
            x = noise_layer(x, noise=draw_noise(x, noise, index, batch))
        x = self.norm(lrelu(bias(x)))
        return style([x, w])

    def build(self, *args, **kwargs):
        self.built = True  # sublayers build on their first call

    def call(self, x, w0, w1, noise=True):
        if self.first:
            x = tf.tile(tf.cast(self.const, w0.dtype), [tf.shape(w0)[0], 1, 1, 1])
        else:
            x = self.blur(self.conv0(x))
        x = self._post(x, w0, self.noise0, self.bias0, self.style0, noise, 0)
        x = self.conv1(x)
        return self._post(x, w1, self.noise1, self.bias1, self.style1, noise, 1)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "first": self.first, "fused": self.fused}


class _Progressive(keras.layers.Layer):
    """The architecture arguments G and E share, and their serialization."""

    def __init__(self, layer_count: int, latent_size: int, channels: int = 3, start_channels: int = 64,
                 max_channels: int = 512, fused_from: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.layer_count, self.latent_size, self.channels = layer_count, latent_size, channels
        self.start_channels, self.max_channels, self.fused_from = start_channels, max_channels, fused_from

    @property
    def top_lod(self) -> int:
        return self.layer_count - 1

    def build(self, *args, **kwargs):
        self.built = True  # Networks builds every LOD by calling it once per LOD

    def get_config(self):
        return {**super().get_config(), "layer_count": self.layer_count, "latent_size": self.latent_size,
                "channels": self.channels, "start_channels": self.start_channels,
                "max_channels": self.max_channels, "fused_from": self.fused_from}


@keras.saving.register_keras_serializable(package="alae_tf")
class StyleGenerator(_Progressive):
    """G: styles (N, 2 * layer_count, latent) -> images (N, R, R, channels) at LOD ``lod``."""

    def __init__(self, layer_count: int, latent_size: int, channels: int = 3, start_channels: int = 64,
                 max_channels: int = 512, fused_from: int = 4, **kwargs):
        super().__init__(layer_count, latent_size, channels, start_channels, max_channels, fused_from, **kwargs)
        self.num_styles = 2 * layer_count
        self.blocks, self.to_rgb = [], []
        for lod in range(layer_count):
            filters = channels_at(lod, layer_count, start_channels, max_channels)
            self.blocks.append(GeneratorBlock(
                filters, first=lod == 0, fused=4 * 2 ** lod >= fused_from, name=f"block{lod}"))
            self.to_rgb.append(ToRGB(channels, name=f"to_rgb{lod}"))
        self.upscale = Upscale2D()

    def call(self, styles, lod: int | None = None, alpha=1.0, noise=True):
        """``noise``: False (none), True (random), a stateless seed of shape [2], or the
        2 * (lod + 1) maps to add, two per block in order, each (N or 1, H, W, 1)."""
        lod = self.top_lod if lod is None else lod
        x = prev = None
        for i in range(lod + 1):
            prev = x
            x = self.blocks[i](x, styles[:, 2 * i], styles[:, 2 * i + 1], noise=_fold(noise, i))
        image = self.to_rgb[lod](x)
        if lod > 0:
            low = self.upscale(self.to_rgb[lod - 1](prev))
            image = low + (image - low) * tf.cast(alpha, image.dtype)
        return image


@keras.saving.register_keras_serializable(package="alae_tf")
class EncoderBlock(keras.layers.Layer):
    """conv 3x3 + bias -> lrelu -> IN (stats) -> blur -> down-conv 3x3 -> bias -> lrelu -> IN (stats).

    The release's default encoder (its EncoderDefault): every block has this form, the 4x4 one
    too (4x4 -> 2x2). Returns the features for the next block and this block's contribution to
    w: each recorded statistic (per-channel mean and std) through its own equalized Dense
    (gain sqrt(2)) to the latent size. Instance norm uses epsilon 1e-5 (torch's default).
    """

    def __init__(self, in_filters: int, out_filters: int, latent_size: int, fused: bool = False,
                 epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.in_filters, self.out_filters, self.latent_size = in_filters, out_filters, latent_size
        self.fused, self.epsilon = fused, epsilon
        self.conv0 = EqualizedConv2D(in_filters, 3, name="conv0")
        self.norm = InstanceNorm(epsilon=epsilon, return_stats=True, name="norm")
        self.style0 = EqualizedDense(latent_size, name="style0")
        self.style1 = EqualizedDense(latent_size, name="style1")
        self.blur = Blur(name="blur")
        self.conv1 = EqualizedConv2D(out_filters, 3, down=True, fused=fused, use_bias=False, name="conv1")
        self.bias1 = Bias(name="bias1")

    def build(self, *args, **kwargs):
        self.built = True  # sublayers build on their first call

    def call(self, x):
        x, stats0 = self.norm(lrelu(self.conv0(x)))
        x = lrelu(self.bias1(self.conv1(self.blur(x))))
        x, stats1 = self.norm(x)
        return x, self.style0(stats0) + self.style1(stats1)

    def get_config(self):
        return {**super().get_config(), "in_filters": self.in_filters, "out_filters": self.out_filters,
                "latent_size": self.latent_size, "fused": self.fused, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="alae_tf")
class StyleEncoder(_Progressive):
    """E: images at LOD ``lod`` -> w (N, latent), the sum of every active block's styles.

    fromRGB (1x1 conv + lrelu) is followed by one more leaky ReLU, as in the release (negative
    slope 0.04 in all). During a fade-in the new block's features are blended with fromRGB of the
    2x-downscaled image and its style contribution is scaled by ``alpha``.
    """

    def __init__(self, layer_count: int, latent_size: int, channels: int = 3, start_channels: int = 64,
                 max_channels: int = 512, fused_from: int = 4, **kwargs):
        super().__init__(layer_count, latent_size, channels, start_channels, max_channels, fused_from, **kwargs)
        self.blocks, self.from_rgb = [], []
        for lod in range(layer_count):
            filters = channels_at(lod, layer_count, start_channels, max_channels)
            out = channels_at(lod - 1, layer_count, start_channels, max_channels)
            self.from_rgb.append(FromRGB(filters, name=f"from_rgb{lod}"))
            self.blocks.append(EncoderBlock(filters, out, latent_size, fused=4 * 2 ** lod >= fused_from,
                                            name=f"block{lod}"))
        self.downscale = Downscale2D()

    def call(self, images, lod: int | None = None, alpha=1.0):
        lod = self.top_lod if lod is None else lod
        x, w = self.blocks[lod](lrelu(self.from_rgb[lod](images)))
        if lod > 0:
            alpha = tf.cast(alpha, x.dtype)
            w = w * alpha
            low = lrelu(self.from_rgb[lod - 1](self.downscale(images)))
            x = low + (x - low) * alpha
        for i in range(lod - 1, -1, -1):
            x, wi = self.blocks[i](x)
            w = w + wi
        return w
