"""VGG16-LPIPS (Zhang et al. 2018): a learned perceptual distance between images.

    lp = LPIPS.from_file("vgg16_lpips.npz")
    d = lp(a, b)          # NHWC float [-1, 1], 1 or 3 channels, >= 16 x 16 -> (N,) distances

Weights file (.npz, float32; see docs/metrics.md for how to produce it):
    <conv>/kernel  (3, 3, C_in, C_out)  for the 13 convs of keras.applications.VGG16
    <conv>/bias    (C_out,)             (block1_conv1 ... block5_conv3); the convs expect RGB
                                        inputs scaled as below (torchvision's VGG16 features)
    lin0 ... lin4  (C,)                 the non-negative per-channel weights of the five taps
                                        (64, 128, 256, 512, 512 channels)
"""
from __future__ import annotations

import os

import numpy as np

# Taps: the ReLU outputs relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16.
TAPS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")
TAP_CHANNELS = (64, 128, 256, 512, 512)
CONVS = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
         "block3_conv2", "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3",
         "block5_conv1", "block5_conv2", "block5_conv3")
# Input scaling of LPIPS: images in [-1, 1] -> (x - SHIFT) / SCALE per RGB channel.
SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
MIN_SIZE = 16  # four 2x poolings before the last tap
NORM_EPS = 1e-10


def load_weights(path: str) -> dict[str, np.ndarray]:
    """The arrays of an LPIPS weights file, checked against the layout in the module doc."""
    if not path:
        raise ValueError("LPIPS needs --lpips_weights=PATH (an .npz, see docs/metrics.md)")
    if not os.path.isfile(path):
        raise ValueError(f"--lpips_weights={path}: no such file")
    try:
        with np.load(path) as f:
            arrays = {k: np.asarray(f[k], np.float32) for k in f.files}
    except Exception as e:  # zipfile / pickle errors of a file that is not an .npz
        raise ValueError(f"--lpips_weights={path}: not an .npz file ({type(e).__name__})") from None
    expected = {}
    c_in = 3
    for name in CONVS:
        c_out = 64 * 2 ** min(int(name[5]) - 1, 3)
        expected[f"{name}/kernel"] = (3, 3, c_in, c_out)
        expected[f"{name}/bias"] = (c_out,)
        c_in = c_out
    for i, c in enumerate(TAP_CHANNELS):
        expected[f"lin{i}"] = (c,)
    for key, shape in expected.items():
        if key not in arrays:
            raise ValueError(f"--lpips_weights={path}: missing array {key!r}")
        if arrays[key].shape != shape:
            raise ValueError(f"--lpips_weights={path}: {key} has shape {arrays[key].shape}, "
                             f"expected {shape}")
    return arrays


class LPIPS:
    """The distance: VGG16 taps, unit-normalised over channels, squared differences weighted
    per channel, averaged over space, summed over taps."""

    def __init__(self, weights: dict[str, np.ndarray], batch_size: int = 32):
        import keras
        import tensorflow as tf

        vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
        for name in CONVS:
            vgg.get_layer(name).set_weights([weights[f"{name}/kernel"], weights[f"{name}/bias"]])
        self.net = keras.Model(vgg.input, [vgg.get_layer(n).output for n in TAPS])
        self.lins = [tf.constant(weights[f"lin{i}"]) for i in range(len(TAPS))]
        self.batch_size = batch_size
        self._distance = tf.function(self._pairs, reduce_retracing=True)

    @classmethod
    def from_file(cls, path: str, batch_size: int = 32) -> "LPIPS":
        return cls(load_weights(path), batch_size)

    def _pairs(self, a, b):
        import tensorflow as tf

        from alae_tf.metrics.fid import to_rgb

        def prep(x):
            return (to_rgb(tf.convert_to_tensor(x, tf.float32)) - SHIFT) / SCALE

        n = tf.shape(a)[0]
        feats = self.net(tf.concat([prep(a), prep(b)], axis=0), training=False)
        total = 0.0
        for f, lin in zip(feats, self.lins):
            f = f / (tf.sqrt(tf.reduce_sum(f * f, axis=-1, keepdims=True)) + NORM_EPS)
            d = tf.reduce_sum(tf.square(f[:n] - f[n:]) * lin, axis=-1)
            total += tf.reduce_mean(d, axis=[1, 2])
        return total

    def __call__(self, a, b) -> np.ndarray:
        """(N,) distances between the image pairs a[i], b[i] (NHWC float [-1, 1])."""
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != b.shape:
            raise ValueError(f"LPIPS compares images of one shape, got {a.shape} and {b.shape}")
        if min(a.shape[1:3]) < MIN_SIZE:
            raise ValueError(f"LPIPS needs images of at least {MIN_SIZE}x{MIN_SIZE}, "
                             f"got {a.shape[1]}x{a.shape[2]}")
        out = [self._distance(a[i:i + self.batch_size], b[i:i + self.batch_size]).numpy()
               for i in range(0, len(a), self.batch_size)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def downsample_to(images: np.ndarray, size: int = 256) -> np.ndarray:
    """Box-filter NHWC images down to ``size`` when they are larger (power-of-two factors)."""
    n, h, w, c = images.shape
    if h <= size:
        return images
    f = h // size
    return images.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4), dtype=np.float32)
