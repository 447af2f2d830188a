"""The conventional progressive discriminator of StyleGAN mode (Karras et al. 2018 / 2019).

LOD ``i`` is resolution ``4 * 2 ** i``, with the same feature maps per LOD as StyleGenerator.
A block above 4 x 4: 3x3 conv + lrelu -> blur -> 3x3 down-conv + lrelu. The 4 x 4 block:
minibatch stddev -> 3x3 conv + lrelu -> dense + lrelu -> dense to one logit. fromRGB at every
LOD; during a fade-in the new block's output is blended with fromRGB of the 2x-downscaled image
by ``alpha``, as in StyleEncoder.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from alae_tf.layers import Bias, Blur, Downscale2D, EqualizedConv2D, EqualizedDense, FromRGB, MinibatchStdDev, lrelu
from alae_tf.networks import channels_at


@keras.saving.register_keras_serializable(package="alae_tf")
class DiscriminatorBlock(keras.layers.Layer):
    """conv + lrelu -> [blur + down-conv + lrelu | mbstd, conv + lrelu, dense + lrelu, dense -> logit]."""

    def __init__(self, in_filters: int, out_filters: int, last: bool, fused: bool = True,
                 mbstd_group: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.in_filters, self.out_filters, self.last = in_filters, out_filters, last
        self.fused, self.mbstd_group = fused, mbstd_group
        if last:
            self.mbstd = MinibatchStdDev(group_size=mbstd_group, name="mbstd")
            self.conv0 = EqualizedConv2D(in_filters, 3, activation="lrelu", name="conv0")
            self.dense = EqualizedDense(out_filters, activation="lrelu", name="dense")
            self.logit = EqualizedDense(1, gain=1.0, name="logit")
        else:
            self.conv0 = EqualizedConv2D(in_filters, 3, activation="lrelu", name="conv0")
            self.blur = Blur(name="blur")
            self.conv1 = EqualizedConv2D(out_filters, 3, down=True, fused=fused, use_bias=False, name="conv1")
            self.bias1 = Bias(name="bias1")

    def build(self, *args, **kwargs):
        self.built = True  # sublayers build on their first call

    def call(self, x):
        if self.last:
            x = self.conv0(self.mbstd(x))
            x = self.dense(tf.reshape(x, [-1, 16 * self.in_filters]))
            return tf.squeeze(tf.cast(self.logit(x), tf.float32), axis=-1)
        x = self.conv0(x)
        return lrelu(self.bias1(self.conv1(self.blur(x))))

    def get_config(self):
        return {**super().get_config(), "in_filters": self.in_filters, "out_filters": self.out_filters,
                "last": self.last, "fused": self.fused, "mbstd_group": self.mbstd_group}


@keras.saving.register_keras_serializable(package="alae_tf")
class ProgressiveDiscriminator(keras.layers.Layer):
    """D: images at LOD ``lod`` -> logits (N,); holds the variables of every LOD from the start."""

    def __init__(self, layer_count: int, channels: int = 3, start_channels: int = 64, max_channels: int = 512,
                 fused_from: int = 4, mbstd_group: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.layer_count, self.channels = layer_count, channels
        self.start_channels, self.max_channels = start_channels, max_channels
        self.fused_from, self.mbstd_group = fused_from, mbstd_group
        self.blocks, self.from_rgb = [], []
        for lod in range(layer_count):
            filters = channels_at(lod, layer_count, start_channels, max_channels)
            out = channels_at(max(lod - 1, 0), layer_count, start_channels, max_channels)
            self.from_rgb.append(FromRGB(filters, name=f"from_rgb{lod}"))
            self.blocks.append(DiscriminatorBlock(filters, out, last=lod == 0, fused=4 * 2 ** lod >= fused_from,
                                                  mbstd_group=mbstd_group, name=f"block{lod}"))
        self.downscale = Downscale2D()

    @property
    def top_lod(self) -> int:
        return self.layer_count - 1

    def build(self, *args, **kwargs):
        self.built = True  # the model builds every LOD by calling it once per LOD

    def call(self, images, lod: int | None = None, alpha=1.0):
        lod = self.top_lod if lod is None else lod
        x = self.from_rgb[lod](images)
        if lod > 0:
            x = self.blocks[lod](x)
            low = self.from_rgb[lod - 1](self.downscale(images))
            x = low + (x - low) * tf.cast(alpha, x.dtype)
            for i in range(lod - 1, 0, -1):
                x = self.blocks[i](x)
        return self.blocks[0](x)

    def get_config(self):
        return {**super().get_config(), "layer_count": self.layer_count, "channels": self.channels,
                "start_channels": self.start_channels, "max_channels": self.max_channels,
                "fused_from": self.fused_from, "mbstd_group": self.mbstd_group}
