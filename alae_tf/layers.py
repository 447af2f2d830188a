"""Building-block layers of ALAE / StyleALAE (channels-last, NHWC).

Equalized learning rate (PGGAN, Karras et al. 2018): weights are stored at unit scale
(times 1/lr_multiplier) and multiplied by a constant at run time. StyleGAN-style layers
(Karras et al. 2019) as used by ALAE (Pidhorskyi et al. 2020): pixel norm, minibatch stddev,
instance norm with statistics, style modulation (AdaIN), noise injection, blur, resampling,
toRGB / fromRGB. See docs/layers.md for the formulas and the deviations from the release.

Every layer computes in ``self.compute_dtype`` (so a ``mixed_float16`` policy works); weights
are cast to that dtype at use; normalisation statistics are computed in float32 (in float64
under a float64 policy, which the release-parity tests use).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "lrelu",
    "wide",
    "EqualizedDense",
    "EqualizedConv2D",
    "Bias",
    "PixelNorm",
    "MinibatchStdDev",
    "InstanceNorm",
    "StyleMod",
    "NoiseInjection",
    "Blur",
    "Upscale2D",
    "Downscale2D",
    "ToRGB",
    "FromRGB",
    "upscale2d",
    "downscale2d",
    "fused_up_kernel",
    "fused_down_kernel",
]

_PACKAGE = "alae_tf"
_ACTIVATIONS = (None, "linear", "lrelu")


def lrelu(x: tf.Tensor) -> tf.Tensor:
    """Leaky ReLU with slope 0.2.

    Written as x * (1 where x >= 0, else 0.2) rather than tf.nn.leaky_relu: grappler's
    remapper fuses conv + bias + LeakyRelu and then fails ("remapper failed: ...
    LeakyReluGrad") on graphs that also hold the activation's gradient, which leaves the
    whole graph unoptimized. The slope mask makes the gradient, and R1's gradient of the
    gradient, one multiplication each (max(x, 0.2 x) took two selects and a sum).
    """
    slope = tf.where(x >= 0, tf.ones([], x.dtype), tf.constant(0.2, x.dtype))
    return x * tf.stop_gradient(slope)


# --------------------------------------------------------------------------- helpers


def wide(x: tf.Tensor) -> tf.Tensor:
    """``x`` in float32, or in float64 if it is float64: the dtype of statistics and losses."""
    return x if x.dtype == tf.float64 else tf.cast(x, tf.float32)


def _runtime_scale(gain: float, fan_in: int, lr_multiplier: float) -> float:
    """Equalized-lr constant c: run-time weight = stored weight * c."""
    return gain / math.sqrt(fan_in) * lr_multiplier


def _stored_init(lr_multiplier: float) -> keras.initializers.Initializer:
    """Initializer of a stored equalized weight: N(0, 1 / lr_multiplier^2)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=1.0 / lr_multiplier)


def _check_activation(activation: Optional[str]) -> Optional[str]:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    return None if activation == "linear" else activation


def _activate(x: tf.Tensor, activation: Optional[str]) -> tf.Tensor:
    return lrelu(x) if activation == "lrelu" else x


def _pad_and_sum_shifts(w: tf.Tensor) -> tf.Tensor:
    """(k, k, i, o) kernel -> (k+1, k+1, i, o) kernel, the sum of its 4 one-pixel shifts.

    Equals the k x k kernel convolved with a 2 x 2 box: the shared core of the fused
    up- and down-sampling convolutions.
    """
    # Four pads, not a pad and four slices: a pad's gradient is a plain slice and the slice's
    # is a pad, where strided slices' gradients (StridedSliceGrad) cost several times more.
    shifts = ([[0, 1], [0, 1]], [[1, 0], [0, 1]], [[0, 1], [1, 0]], [[1, 0], [1, 0]])
    return tf.add_n([tf.pad(w, p + [[0, 0], [0, 0]]) for p in shifts])


def fused_up_kernel(w: tf.Tensor) -> tf.Tensor:
    """Kernel for ``conv2d_transpose`` (stride 2, SAME) equal to nearest-x2 then ``conv(w)``.

    Input (k, k, in, out) with odd k; output (k+1, k+1, out, in) as conv2d_transpose wants.
    The transposed convolution indexes its kernel mirrored, hence the flip.
    """
    w = _pad_and_sum_shifts(w)[::-1, ::-1]
    return tf.transpose(w, [0, 1, 3, 2])


def fused_down_kernel(w: tf.Tensor) -> tf.Tensor:
    """Kernel for ``conv2d`` (stride 2, SAME) equal to ``conv(w)`` then 2 x 2 average pool."""
    return _pad_and_sum_shifts(w) * 0.25


def _static_dim(shape: Sequence[Optional[int]], axis: int, layer: str) -> int:
    dim = shape[axis]
    if dim is None:
        raise ValueError(f"{layer}: the channel dimension must be known, got shape {shape}")
    return int(dim)


def _as_tuple2(kernel_size: Any) -> tuple:
    if isinstance(kernel_size, int):
        return (kernel_size, kernel_size)
    kh, kw = kernel_size
    return (int(kh), int(kw))


# --------------------------------------------------------------------------- equalized layers


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedDense(keras.layers.Layer):
    """Dense layer with equalized learning rate; acts on the last axis.

    y = act(x @ (W * c) + b * lr_multiplier), c = gain / sqrt(fan_in) * lr_multiplier,
    W ~ N(0, 1 / lr_multiplier^2), b initialised to bias_init / lr_multiplier.
    """

    def __init__(
        self,
        units: int,
        gain: float = math.sqrt(2),
        lr_multiplier: float = 1.0,
        use_bias: bool = True,
        activation: Optional[str] = None,
        bias_init: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.gain = float(gain)
        self.lr_multiplier = float(lr_multiplier)
        self.use_bias = bool(use_bias)
        self.activation = _check_activation(activation)
        self.bias_init = float(bias_init)

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        fan_in = _static_dim(input_shape, -1, self.name)
        self.scale = _runtime_scale(self.gain, fan_in, self.lr_multiplier)
        self.kernel = self.add_weight(
            name="kernel", shape=(fan_in, self.units), initializer=_stored_init(self.lr_multiplier)
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=keras.initializers.Constant(self.bias_init / self.lr_multiplier),
            )

    def runtime_kernel(self) -> tf.Tensor:
        """The effective (run-time) kernel W * c, in the compute dtype."""
        return tf.cast(self.kernel, self.compute_dtype) * tf.cast(self.scale, self.compute_dtype)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, self.compute_dtype)
        y = tf.tensordot(x, self.runtime_kernel(), axes=[[x.shape.rank - 1], [0]])
        if self.bias is not None:
            y = y + tf.cast(self.bias, self.compute_dtype) * tf.cast(
                self.lr_multiplier, self.compute_dtype
            )
        return _activate(y, self.activation)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            units=self.units,
            gain=self.gain,
            lr_multiplier=self.lr_multiplier,
            use_bias=self.use_bias,
            activation=self.activation,
            bias_init=self.bias_init,
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedConv2D(keras.layers.Layer):
    """2D convolution (SAME padding, stride 1) with equalized learning rate.

    c = gain / sqrt(kh * kw * in_ch) * lr_multiplier. ``up=True``: output = conv(nearest_x2(x));
    ``down=True``: output = avgpool_2x2(conv(x)). ``fused=True`` computes these as one
    stride-2 (transposed) convolution with a (k+1) x (k+1) kernel (odd k only); the result is
    the same. Bias and activation are applied after resampling.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        gain: float = math.sqrt(2),
        lr_multiplier: float = 1.0,
        use_bias: bool = True,
        up: bool = False,
        down: bool = False,
        fused: bool = True,
        activation: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if up and down:
            raise ValueError("EqualizedConv2D: up=True and down=True cannot be combined")
        self.filters = int(filters)
        self.kernel_size = _as_tuple2(kernel_size)
        if fused and (up or down) and any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(
                f"EqualizedConv2D: fused up/down needs an odd kernel_size, got {self.kernel_size}"
            )
        self.gain = float(gain)
        self.lr_multiplier = float(lr_multiplier)
        self.use_bias = bool(use_bias)
        self.up = bool(up)
        self.down = bool(down)
        self.fused = bool(fused)
        self.activation = _check_activation(activation)

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        in_ch = _static_dim(input_shape, -1, self.name)
        kh, kw = self.kernel_size
        self.scale = _runtime_scale(self.gain, kh * kw * in_ch, self.lr_multiplier)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(kh, kw, in_ch, self.filters),
            initializer=_stored_init(self.lr_multiplier),
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def runtime_kernel(self) -> tf.Tensor:
        """The effective (run-time) kernel W * c, (kh, kw, in, out), in the compute dtype."""
        return tf.cast(self.kernel, self.compute_dtype) * tf.cast(self.scale, self.compute_dtype)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, self.compute_dtype)
        w = self.runtime_kernel()
        if self.up and self.fused:
            shape = tf.shape(x)
            out_shape = tf.stack([shape[0], shape[1] * 2, shape[2] * 2, self.filters])
            y = tf.nn.conv2d_transpose(x, fused_up_kernel(w), out_shape, 2, padding="SAME")
            if x.shape[1] is not None and x.shape[2] is not None:
                y = tf.ensure_shape(y, [None, x.shape[1] * 2, x.shape[2] * 2, self.filters])
        elif self.down and self.fused:
            y = tf.nn.conv2d(x, fused_down_kernel(w), 2, padding="SAME")
        else:
            if self.up:
                x = upscale2d(x, 2)
            y = tf.nn.conv2d(x, w, 1, padding="SAME")
            if self.down:
                y = downscale2d(y, 2)
        if self.bias is not None:
            # bias_add, not "+": grappler's conv + bias + activation fusion fails on the
            # add form when the activation's gradient is also in the graph.
            y = tf.nn.bias_add(y, tf.cast(self.bias, self.compute_dtype) * tf.cast(
                self.lr_multiplier, self.compute_dtype))
        return _activate(y, self.activation)

    def compute_output_shape(self, input_shape):
        n, h, w = input_shape[0], input_shape[1], input_shape[2]
        if self.up:
            h, w = (None if h is None else h * 2), (None if w is None else w * 2)
        if self.down:
            h, w = (None if h is None else h // 2), (None if w is None else w // 2)
        return (n, h, w, self.filters)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            gain=self.gain,
            lr_multiplier=self.lr_multiplier,
            use_bias=self.use_bias,
            up=self.up,
            down=self.down,
            fused=self.fused,
            activation=self.activation,
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Bias(keras.layers.Layer):
    """Learned per-channel (last axis) bias: x + b * lr_multiplier, b initialised to 0."""

    def __init__(self, lr_multiplier: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lr_multiplier = float(lr_multiplier)

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        channels = _static_dim(input_shape, -1, self.name)
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, self.compute_dtype)
        return x + tf.cast(self.bias, self.compute_dtype) * tf.cast(
            self.lr_multiplier, self.compute_dtype
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(lr_multiplier=self.lr_multiplier)
        return config


# --------------------------------------------------------------------------- normalisation


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelNorm(keras.layers.Layer):
    """x / sqrt(mean(x^2 over the last axis) + epsilon)."""

    def __init__(self, epsilon: float = 1e-8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x32 = wide(x)
        y = x32 * tf.math.rsqrt(tf.reduce_mean(tf.square(x32), axis=-1, keepdims=True) + self.epsilon)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MinibatchStdDev(keras.layers.Layer):
    """Appends ``num_new_features`` maps: the mean over (H, W, channels-of-feature) of the
    per-group standard deviation, group = every M-th sample (M = N / group size).

    group size = min(group_size, N); N must be divisible by it.
    """

    def __init__(self, group_size: int = 4, num_new_features: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group_size = int(group_size)
        self.num_new_features = int(num_new_features)

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        channels = _static_dim(input_shape, -1, self.name)
        if channels % self.num_new_features:
            raise ValueError(
                f"MinibatchStdDev: channels ({channels}) must be divisible by "
                f"num_new_features ({self.num_new_features})"
            )

    def call(self, x: tf.Tensor) -> tf.Tensor:
        n_static = x.shape[0]
        if n_static is not None:
            g = min(self.group_size, n_static)
            if n_static % g:
                raise ValueError(
                    f"MinibatchStdDev: batch size {n_static} is not divisible by the group "
                    f"size {g}"
                )
        else:
            g = tf.minimum(self.group_size, tf.shape(x)[0])
        _, h, w, c = tf.unstack(tf.shape(x))
        f = self.num_new_features
        y = wide(x)
        y = tf.reshape(y, tf.stack([g, -1, h, w, f, c // f]))  # [G, M, H, W, F, C/F]
        y = y - tf.reduce_mean(y, axis=0, keepdims=True)
        y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + 1e-8)  # [M, H, W, F, C/F]
        y = tf.reduce_mean(y, axis=[1, 2, 4])  # [M, F]
        y = tf.reshape(y, tf.stack([-1, 1, 1, f]))
        y = tf.tile(y, tf.stack([g, h, w, 1]))  # [N, H, W, F]
        return tf.concat([tf.cast(x, self.compute_dtype), tf.cast(y, self.compute_dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return tuple(input_shape[:-1]) + (None if c is None else c + self.num_new_features,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(group_size=self.group_size, num_new_features=self.num_new_features)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InstanceNorm(keras.layers.Layer):
    """Per-sample, per-channel normalisation over H, W, no affine: (x - mean) / sqrt(var + eps).

    With ``return_stats=True`` returns ``(normalized, stats)``, stats = concat([mean, std], -1)
    of shape (N, 2C), std = sqrt(var + 1e-8) (finite gradient at var = 0).
    Statistics are computed in float32 (float64 under a float64 policy).
    """

    def __init__(self, epsilon: float = 1e-8, return_stats: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.return_stats = bool(return_stats)

    def call(self, x: tf.Tensor):
        x32 = wide(x)
        mean = tf.reduce_mean(x32, axis=[1, 2], keepdims=True)
        centered = x32 - mean
        var = tf.reduce_mean(tf.square(centered), axis=[1, 2], keepdims=True)
        y = tf.cast(centered * tf.math.rsqrt(var + self.epsilon), self.compute_dtype)
        if not self.return_stats:
            return y
        std = tf.sqrt(var + 1e-8)
        stats = tf.concat([mean[:, 0, 0, :], std[:, 0, 0, :]], axis=-1)
        return y, tf.cast(stats, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        if not self.return_stats:
            return input_shape
        c = input_shape[-1]
        return input_shape, (input_shape[0], None if c is None else 2 * c)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(epsilon=self.epsilon, return_stats=self.return_stats)
        return config


# --------------------------------------------------------------------------- style and noise


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StyleMod(keras.layers.Layer):
    """AdaIN style modulation: call([x, w]) = x * (1 + y_s) + y_b,
    [y_s, y_b] = EqualizedDense(2C, gain=1)(w); x (N, H, W, C), w (N, latent)."""

    def build(self, input_shape) -> None:
        x_shape, w_shape = input_shape
        channels = _static_dim(x_shape, -1, self.name)
        self.affine = EqualizedDense(2 * channels, gain=1.0, dtype=self.dtype_policy, name="affine")
        self.affine.build(w_shape)

    def call(self, inputs) -> tf.Tensor:
        x, w = inputs
        x = tf.cast(x, self.compute_dtype)
        style = self.affine(w)
        y_s, y_b = tf.split(style, 2, axis=-1)
        return x * (1.0 + y_s[:, None, None, :]) + y_b[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NoiseInjection(keras.layers.Layer):
    """x + weight * noise: per-channel learned weight (init 0), noise (N, H, W, 1) ~ N(0, 1)
    drawn per call when not given."""

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        channels = _static_dim(input_shape, -1, self.name)
        self.weight = self.add_weight(name="weight", shape=(channels,), initializer="zeros")

    def call(self, x: tf.Tensor, noise: Optional[tf.Tensor] = None) -> tf.Tensor:
        x = tf.cast(x, self.compute_dtype)
        if noise is None:
            shape = tf.shape(x)
            noise = tf.random.normal(tf.stack([shape[0], shape[1], shape[2], 1]), dtype=x.dtype)
        return x + tf.cast(self.weight, x.dtype) * tf.cast(noise, x.dtype)

    def compute_output_shape(self, x_shape, noise_shape=None):
        return x_shape


# --------------------------------------------------------------------------- resampling


def upscale2d(x: tf.Tensor, factor: int = 2) -> tf.Tensor:
    """Nearest-neighbour upsampling of an NHWC tensor by an integer factor."""
    if factor == 1:
        return x
    shape = tf.shape(x)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    y = tf.reshape(x, tf.stack([n, h, 1, w, 1, c]))
    y = tf.tile(y, [1, 1, factor, 1, factor, 1])
    y = tf.reshape(y, tf.stack([n, h * factor, w * factor, c]))
    s = x.shape
    return tf.ensure_shape(
        y,
        [s[0], None if s[1] is None else s[1] * factor, None if s[2] is None else s[2] * factor, s[3]],
    )


def downscale2d(x: tf.Tensor, factor: int = 2) -> tf.Tensor:
    """Box-filter (average pool) downsampling of an NHWC tensor by an integer factor."""
    if factor == 1:
        return x
    return tf.nn.avg_pool2d(x, factor, factor, padding="VALID")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Blur(keras.layers.Layer):
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 filter, zero ('same') padding, stride 1."""

    _KERNEL_1D = np.array([1.0, 2.0, 1.0])

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, self.compute_dtype)
        k = np.outer(self._KERNEL_1D, self._KERNEL_1D)
        k = k / k.sum()
        channels = x.shape[-1]
        kernel = tf.constant(np.tile(k[:, :, None, None], [1, 1, channels, 1]), dtype=x.dtype)
        return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], padding="SAME")

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Upscale2D(keras.layers.Layer):
    """Nearest-neighbour upsampling by ``factor``."""

    def __init__(self, factor: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return upscale2d(tf.cast(x, self.compute_dtype), self.factor)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        f = self.factor
        return (n, None if h is None else h * f, None if w is None else w * f, c)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(factor=self.factor)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Downscale2D(keras.layers.Layer):
    """Box-average downsampling by ``factor`` (average pool factor x factor)."""

    def __init__(self, factor: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return downscale2d(tf.cast(x, self.compute_dtype), self.factor)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        f = self.factor
        return (n, None if h is None else h // f, None if w is None else w // f, c)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(factor=self.factor)
        return config


# --------------------------------------------------------------------------- RGB adapters


def _layer_config(layer: keras.layers.Layer) -> dict:
    """The base keras.layers.Layer config (name, trainable, dtype), without subclass fields."""
    return keras.layers.Layer.get_config(layer)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ToRGB(EqualizedConv2D):
    """1 x 1 equalized conv to ``channels`` image channels, linear, with bias (gain 0.03)."""

    def __init__(self, channels: int, gain: float = 0.03, **kwargs: Any) -> None:
        super().__init__(channels, 1, gain=gain, use_bias=True, activation=None, **kwargs)
        self.channels = int(channels)

    def get_config(self) -> dict:
        config = _layer_config(self)
        config.update(channels=self.channels, gain=self.gain)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FromRGB(EqualizedConv2D):
    """1 x 1 equalized conv to ``filters`` feature maps, with bias and leaky ReLU 0.2."""

    def __init__(self, filters: int, **kwargs: Any) -> None:
        super().__init__(filters, 1, use_bias=True, activation="lrelu", **kwargs)

    def get_config(self) -> dict:
        config = _layer_config(self)
        config.update(filters=self.filters)
        return config
