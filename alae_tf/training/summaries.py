"""TensorBoard scalars and image grids, and PNG grids in the run directory."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from alae_tf.images import grid, save_png, to_uint8


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
                tiled = grid(to_uint8(np.asarray(images, np.float32)), columns.get(name))
                tf.summary.image(name, tiled[None], max_outputs=1)
                if png_tag is not None:
                    written.append(os.path.join(self.image_dir, f"{name}_{png_tag}.png"))
                    save_png(written[-1], tiled)
        return written

    def flush(self):
        self.writer.flush()
