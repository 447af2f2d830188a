"""Pixels and pictures: uint8 <-> float [-1, 1], image grids, PNG files."""
from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf
from PIL import Image


def to_float(pixels):
    """uint8 pixels [0, 255] -> float32 in [-1, 1] (x / 127.5 - 1); numpy in, numpy out,
    else a tensor (usable inside tf.function)."""
    out = tf.cast(pixels, tf.float32) / 127.5 - 1.0
    return out.numpy() if isinstance(pixels, np.ndarray) else out


def to_uint8(images):
    """float images in [-1, 1] -> uint8 pixels, clip(round((x + 1) * 127.5), 0, 255) with ties to
    even; numpy in, numpy out, else a tensor (usable inside tf.function)."""
    x = tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5)
    out = tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)
    return out.numpy() if isinstance(images, np.ndarray) else out


def grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tiles NHWC uint8 images into one HWC image, ``columns`` wide.

    By default the columns are the smallest count >= sqrt(n) that fills every row (at most twice
    sqrt(n), so 32 images are 8 x 4), else ceil(sqrt(n)).
    """
    n, h, w, c = images.shape
    columns = columns or default_columns(n)
    rows = int(math.ceil(n / columns))
    out = np.zeros((rows * h, columns * w, c), dtype=images.dtype)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        out[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
    return out


def default_columns(n: int) -> int:
    """Columns of a full, near-square grid of n images (see ``grid``)."""
    square = int(math.ceil(math.sqrt(n)))
    return next((c for c in range(square, 2 * square + 1) if n % c == 0), square)


def save_png(path: str, image: np.ndarray):
    """Writes an HWC uint8 image (1 or 3 channels) as PNG, atomically."""
    image = image[..., 0] if image.shape[-1] == 1 else image
    tmp = path + ".tmp"
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)
