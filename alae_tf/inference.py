"""A trained model for use, and the datasets it is used on.

``open_model(path)`` opens a run directory of alae_tf.train (a ported release checkpoint,
alae_tf.port, is one too) or a SavedModel of alae_tf.export. Either way the model runs through
the export's noise-free functions (alae_tf.export.module_of), so a run and its export give the
same images. Images are NHWC float32 in [-1, 1] (alae_tf.images converts pixels), numpy in
and out.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import tensorflow as tf

from alae_tf.images import to_float

SAVED_MODEL_FILE = "saved_model.pb"
FLAGS_FILE = "flags.txt"  # the training command's flags (alae_tf.train), after a "# cwd: DIR" line


def first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _f32(x) -> tf.Tensor:
    return tf.constant(np.asarray(x, np.float32))


class Model:
    """The functions of an export module (in process or loaded) over numpy arrays.

    ``name`` is the model (alae_style, alae_mlp, vae, ...), ``kind`` the name or "saved_model",
    ``step`` the images seen at the checkpoint (0 for a SavedModel). ALAE has styles: a mapping
    to ``num_styles`` style slots and truncation towards ``w_avg``; the baselines have neither,
    and only some have an encoder or a mapping network.
    """

    def __init__(self, module, kind: str | None = None, step: int = 0):
        m = self._m = module
        name = getattr(m, "model_name", None)  # absent in ALAE exports of older versions
        self.name = name.numpy().decode() if name is not None else "alae"
        self.kind, self.step = kind or self.name, int(step)
        self.resolution = int(m.resolution.numpy())
        self.latent_size = int(m.latent_size.numpy())
        self.has_encoder = hasattr(m, "encode_float")
        self.has_mapping = hasattr(m, "map")
        self.has_styles = hasattr(m, "synthesize")
        self.channels = (int(m.channels.numpy()) if hasattr(m, "channels")
                         else int(m.encode_float.input_signature[0].shape[-1]))
        self.num_styles = int(m.num_styles.numpy()) if self.has_styles else 1
        self.truncation_psi = float(m.default_truncation_psi.numpy()) if self.has_styles else None
        self.truncation_cutoff = int(m.truncation_cutoff.numpy()) if self.has_styles else 0
        self.w_avg = m.w_avg.numpy() if self.has_styles else None

    def generate(self, z, psi: float | None = None) -> np.ndarray:
        """Images of latents ``z``; ``psi``: the truncation (None: none)."""
        if not self.has_styles:
            if psi is not None:
                raise ValueError(f"the {self.name} model has no truncation (ALAE only)")
            return self._m.generate(_f32(z))["images_float"].numpy()
        return self._m.generate(_f32(z), tf.constant(1.0 if psi is None else psi))["images_float"].numpy()

    def map(self, z) -> np.ndarray:
        return self._m.map(_f32(z))["w"].numpy()

    def encode(self, images) -> np.ndarray:
        return self._m.encode_float(_f32(images))["w"].numpy()

    def decode(self, w) -> np.ndarray:
        return self._m.decode(_f32(w))["images_float"].numpy()

    def reconstruct(self, images) -> np.ndarray:
        return self.decode(self.encode(images))

    def synthesize(self, styles) -> np.ndarray:
        """Images of one w per style slot, (N, num_styles, latent_size)."""
        return self._m.synthesize(_f32(styles))["images_float"].numpy()

    def synthesize_lods(self, styles) -> dict[int, np.ndarray]:
        """{resolution: images} of one w per style slot at every LOD of the growth (ALAE)."""
        if not hasattr(self._m, "synthesize_lods"):
            raise ValueError(f"the {self.kind} model has no images at lower resolutions (a style "
                             f"ALAE run directory, or a SavedModel exported since, has them)")
        out = self._m.synthesize_lods(_f32(styles))
        return {int(k[1:]): v.numpy() for k, v in out.items()}

    def styles(self, z, psi: float) -> np.ndarray:
        """map(z) in every style slot, truncated as ALAE.truncate: lerp(w_avg, w, psi) on the
        first ``truncation_cutoff`` slots."""
        w = np.repeat(self.map(z)[:, None], self.num_styles, axis=1)
        p = np.where(np.arange(self.num_styles) < self.truncation_cutoff, psi, 1.0).astype(np.float32)
        return self.w_avg + (w - self.w_avg) * p[None, :, None]

    def latents(self, seed: int, count: int) -> np.ndarray:
        return np.random.RandomState(seed).standard_normal((count, self.latent_size)).astype(np.float32)


def open_model(path: str, checkpoint: str | None = None) -> Model:
    """The model of a run directory (its ``checkpoint``, default the latest) or a SavedModel."""
    if os.path.exists(os.path.join(path, SAVED_MODEL_FILE)):
        try:
            return Model(tf.saved_model.load(path), kind="saved_model")
        except (AttributeError, tf.errors.OpError) as e:
            raise ValueError(f"{path}: not a SavedModel of alae_tf.export ({first_line(e)})") from None
    from alae_tf.export import module_of
    from alae_tf.runs import load_run

    model = load_run(path, checkpoint)
    ckpt = checkpoint or tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
    try:
        step = int(tf.train.load_variable(ckpt, "images_seen/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):
        step = int(getattr(model, "step", 0))
    return Model(module_of(model), step=step)


# ----------------------------------------------------------------------------------------------
# Datasets: evaluate's and figures' only calls into the reader
# ----------------------------------------------------------------------------------------------

def dataset_exists(path: str) -> bool:
    """Whether ``path`` designates a dataset's files, readable or not."""
    from tfrecords_tools.format import find_datasets

    try:
        return bool(find_datasets(path))
    except (OSError, ValueError):
        return False


def recorded_data_dir(run_dir: str) -> str:
    """The dataset that trained ``run_dir``: the last --data_dir of its flags.txt, a relative one
    resolved against the folder training started in (when recorded), else the current one."""
    path = os.path.join(run_dir, FLAGS_FILE)
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        raise ValueError(f"pass --data_dir=DATA: {path} (which records the run's dataset) cannot "
                         f"be read") from None
    recorded = [line.split("=", 1)[1] for line in lines if line.startswith("--data_dir=")]
    if not recorded:
        raise ValueError(f"pass --data_dir=DATA: {path} records no --data_dir")
    data_dir = recorded[-1]
    starts = [line.split(":", 1)[1].strip() for line in lines if line.startswith("# cwd:")]
    for candidate in [os.path.join(d, data_dir) for d in starts] + [data_dir]:
        if dataset_exists(candidate):
            return candidate
    raise ValueError(f"the run's dataset --data_dir={data_dir} (recorded in {path}) no longer "
                     f"exists: pass --data_dir=DATA")


class Dataset:
    """A dataset of tfrecords_tools.convert read at one resolution (default its own), in file
    order. Errors are one line that starts with ``name`` (default the path)."""

    def __init__(self, path: str, resolution: int | None = None, channels: int | None = None,
                 name: str | None = None):
        from alae_tf.data import describe

        self.path, self.name = path, name or path
        try:
            self.info = describe(path)
            self.resolution = resolution or self.info.resolution
            self.info.level_at(self.resolution)
        except ValueError as e:
            raise ValueError(f"{self.name}: {first_line(e)}") from None
        if channels and self.info.channels != channels:
            raise ValueError(f"{self.name} has {self.info.channels}-channel images, the model {channels}")
        self.count, self.has_labels = self.info.count, bool(self.info.has_labels)

    def batches(self, count: int, batch_size: int, labels: bool = False) -> Iterator:
        """Batches (images float32 NHWC [-1, 1], labels or None) of the first ``count`` images."""
        from alae_tf.data import make_dataset

        if labels and not self.has_labels:
            raise ValueError(f"{self.name} has no labels")
        count = min(count, self.count)
        b = min(batch_size, count)
        ds = make_dataset(self.path, self.resolution, b, labels=labels, shuffle=False, repeat=False,
                          info=self.info)
        seen = 0
        for item in ds:
            x, y = item if labels else (item, None)
            take = min(b, count - seen)
            yield to_float(x.numpy()[:take]), (None if y is None else y.numpy()[:take])
            seen += take
            if seen >= count:
                return

    def arrays(self, count: int, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray | None]:
        """The first ``count`` images (float) and labels (None without labels)."""
        xs, ys = zip(*self.batches(count, batch_size, labels=self.has_labels))
        return np.concatenate(xs), (np.concatenate(ys) if self.has_labels else None)

    def pixels(self, count: int) -> np.ndarray:
        """The first ``count`` images as NHWC uint8."""
        from alae_tf.data import take_images

        try:
            return take_images(self.path, self.resolution, count)
        except Exception as e:  # DatasetError, missing files: one line
            raise ValueError(f"{self.name}: {first_line(e)}") from None

