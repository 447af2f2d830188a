"""TensorBoard scalars and image grids, and PNG grids in the run directory."""
from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf
from PIL import Image


def to_uint8(images) -> np.ndarray:
    """NHWC float in [-1, 1] -> NHWC uint8."""
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


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


class Summaries:
    """Scalars and image grids to TensorBoard (chief only) and PNG grids to ``<run>/images``."""

    def __init__(self, run_dir: str, chief: bool = True):
        self.chief = chief
        self.image_dir = os.path.join(run_dir, "images")
        if chief:
            os.makedirs(self.image_dir, exist_ok=True)
            self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
        else:
            self.writer = tf.summary.create_noop_writer()

    def scalars(self, values: dict, step: int):
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, float(value))

    def images(self, grids: dict, step: int, columns: dict | None = None, png_tag: str | None = None) -> list[str]:
        """Writes each NHWC [-1, 1] batch as a grid image; also a PNG named ``<name>_<png_tag>``.

        Returns the PNG paths written (none on other workers than the chief).
        """
        if not self.chief:
            return []
        columns = columns or {}
        written = []
        with self.writer.as_default(step=step):
            for name, images in grids.items():
                tiled = grid(to_uint8(images), columns.get(name))
                tf.summary.image(name, tiled[None], max_outputs=1)
                if png_tag is not None:
                    written.append(os.path.join(self.image_dir, f"{name}_{png_tag}.png"))
                    save_png(written[-1], tiled)
        return written

    def flush(self):
        self.writer.flush()
