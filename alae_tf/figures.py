"""PNG figures from a run directory or an exported SavedModel.

    python -m alae_tf.figures generate    --model=RUN_OR_EXPORT --output=samples.png
                                          [--seed --count --truncation_psi]
    python -m alae_tf.figures reconstruct --model=... --images=FOLDER | --data_dir=DATASET [--count]
    python -m alae_tf.figures interpolate --model=... --images=FOLDER | --data_dir=DATASET [--steps]
    python -m alae_tf.figures stylemix    --model=... [--seed --sources --destinations --truncation_psi]

Every figure is deterministic (no per-pixel noise). Baselines (ae, dae, sae, vae, ...) have
generate, and reconstruct / interpolate when they encode; stylemix needs ALAE's style model.
See docs/export.md.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import tensorflow as tf

from alae_tf.training.summaries import grid, save_png, to_uint8

KINDS = ("generate", "reconstruct", "interpolate", "stylemix")
# Style slots [start, end) copied from the source in the style-mixing grid (StyleGAN, ALAE paper).
CROSSOVERS = (("coarse", 0, 4), ("middle", 4, 8), ("fine", 8, None))


# ----------------------------------------------------------------------------------------------
# Backends: one interface over an in-process ALAE and a loaded SavedModel (float images [-1, 1])
# ----------------------------------------------------------------------------------------------

class _StyleBackend:
    """Samples and decodings of an ALAE backend (map + synthesize)."""

    has_styles = True
    can_encode = True
    name = "alae"

    def sample(self, z, psi: float | None = None):
        return self.synthesize(styles_of(self, z, self.default_psi if psi is None else psi))

    def decode(self, w):
        return self.synthesize(tile(self, w))


class RunBackend(_StyleBackend):
    """The EMA networks of a run directory."""

    def __init__(self, model):
        self.model = model
        c = model.config
        self.resolution, self.channels, self.latent_size = c.resolution, c.channels, c.latent_size
        self.num_styles = model.ema.G.num_styles
        self.default_psi = float(c.truncation_psi)
        self.cutoff = int(c.truncation_cutoff)
        self.w_avg = model.w_avg.numpy()
        self.mlp = c.model == "alae_mlp"

    def map(self, z):
        return self.model.ema.F(tf.constant(z, tf.float32)).numpy()

    def synthesize(self, styles):
        return self.model.ema.G(tf.constant(styles, tf.float32), lod=self.model.config.top_lod,
                                alpha=1.0, noise=False).numpy()

    def encode(self, images_uint8):
        x = tf.constant(images_uint8, tf.float32) / 127.5 - 1.0
        return self.model.encode(x).numpy()


class SavedModelBackend(_StyleBackend):
    """A SavedModel written by alae_tf.export."""

    def __init__(self, path: str, sm=None):
        self.sm = tf.saved_model.load(path) if sm is None else sm
        self.resolution = int(self.sm.resolution.numpy())
        self.latent_size = int(self.sm.latent_size.numpy())
        self.num_styles = int(self.sm.num_styles.numpy())
        self.channels = int(self.sm.encode.input_signature[0].shape[-1])
        self.default_psi = float(self.sm.default_truncation_psi.numpy())
        self.cutoff = int(self.sm.truncation_cutoff.numpy())
        self.w_avg = self.sm.w_avg.numpy()
        self.mlp = self.num_styles == 1

    def map(self, z):
        return self.sm.map(tf.constant(z, tf.float32))["w"].numpy()

    def synthesize(self, styles):
        return self.sm.synthesize(tf.constant(styles, tf.float32))["images_float"].numpy()

    def encode(self, images_uint8):
        return self.sm.encode(tf.constant(images_uint8, tf.uint8))["w"].numpy()


class _Baseline:
    """Samples and codes of a baseline model (no styles, no truncation)."""

    has_styles = False
    default_psi = None

    def sample(self, z, psi: float | None = None):
        if psi is not None:
            raise ValueError(f"--truncation_psi: the {self.name} model has no truncation (ALAE only)")
        return self._generate(np.asarray(z, np.float32))


class BaselineRunBackend(_Baseline):
    """A baseline model of a run directory."""

    def __init__(self, model):
        self.model = model
        c = model.config
        self.name, self.resolution, self.channels = c.model, c.resolution, c.channels
        self.latent_size = c.latent_size
        self.can_encode = bool(model.can_encode)

    def _generate(self, z):
        return np.asarray(self.model.generate(tf.constant(z), truncation=False, noise=False))

    def encode(self, images_uint8):
        return np.asarray(self.model.encode(tf.constant(images_uint8, tf.float32) / 127.5 - 1.0))

    def decode(self, w):
        return np.asarray(self.model.decode(tf.constant(w, tf.float32)))


class BaselineSavedModelBackend(_Baseline):
    """A baseline's SavedModel written by alae_tf.export."""

    def __init__(self, sm):
        self.sm = sm
        self.name = sm.model_name.numpy().decode()
        self.resolution, self.channels = int(sm.resolution.numpy()), int(sm.channels.numpy())
        self.latent_size, self.can_encode = int(sm.latent_size.numpy()), bool(sm.can_encode.numpy())

    def _generate(self, z):
        return self.sm.generate(tf.constant(z))["images_float"].numpy()

    def encode(self, images_uint8):
        return self.sm.encode(tf.constant(images_uint8, tf.uint8))["w"].numpy()

    def decode(self, w):
        return self.sm.decode(tf.constant(w, tf.float32))["images_float"].numpy()


def open_model(path: str, checkpoint: str | None = None):
    """A backend for a run directory (model.json) or an exported SavedModel (saved_model.pb)."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        try:
            sm = tf.saved_model.load(path)
            if hasattr(sm, "model_name") and not hasattr(sm, "num_styles"):
                return BaselineSavedModelBackend(sm)
            return SavedModelBackend(path, sm)
        except (AttributeError, tf.errors.OpError) as e:
            raise ValueError(f"{path}: not a SavedModel of alae_tf.export "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    from alae_tf.models.alae import ALAE
    from alae_tf.runs import load_run

    model = load_run(path, checkpoint)
    return RunBackend(model) if isinstance(model, ALAE) else BaselineRunBackend(model)


def _need_encoder(backend, kind: str):
    if not backend.can_encode:
        raise ValueError(f"{kind} needs a model with an encoder: {backend.name} has none")


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------

def tile(backend, w):
    return np.repeat(np.asarray(w, np.float32)[:, None], backend.num_styles, axis=1)


def truncate(backend, styles, psi: float):
    """lerp(w_avg, w, psi) on the first ``truncation_cutoff`` slots, as ALAE.truncate."""
    p = np.where(np.arange(backend.num_styles) < backend.cutoff, psi, 1.0).astype(np.float32)
    return backend.w_avg + (styles - backend.w_avg) * p[None, :, None]


def latents(backend, seed: int, count: int):
    return np.random.RandomState(seed).standard_normal((count, backend.latent_size)).astype(np.float32)


def styles_of(backend, z, psi: float):
    return truncate(backend, tile(backend, backend.map(z)), psi)


def decode(backend, w):
    return backend.decode(w)


def read_folder(folder: str, resolution: int, channels: int, count: int | None = None) -> np.ndarray:
    """NHWC uint8 images of a folder (sorted by name), converted as tfrecords_tools.convert does."""
    from tfrecords_tools.sources import IMAGE_EXTENSIONS, ImageError, ImageSpec, load_image

    if not os.path.isdir(folder):
        raise ValueError(f"--images={folder} is not a folder")
    names = sorted(f for f in os.listdir(folder)
                   if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise ValueError(f"--images={folder} has no {'/'.join(IMAGE_EXTENSIONS)} images")
    names = names[:count] if count else names
    spec = ImageSpec(resolution=resolution, channels=channels, allow_upscale=True)
    out = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            out.append(load_image(path, path, spec))
        except ImageError as e:
            raise ValueError(str(e).splitlines()[0]) from None
    return np.stack(out)


def read_images(backend, folder: str | None, data_dir: str | None, count: int) -> np.ndarray:
    if bool(folder) == bool(data_dir):
        raise ValueError("pass exactly one of --images=FOLDER and --data_dir=DATASET")
    if folder:
        return read_folder(folder, backend.resolution, backend.channels, count)
    from alae_tf.data import take_images

    try:
        images = take_images(data_dir, backend.resolution, count)
    except Exception as e:  # DatasetError, missing files: one line
        raise ValueError(f"--data_dir={data_dir}: {str(e).splitlines()[0]}") from None
    if images.shape[-1] != backend.channels:
        raise ValueError(f"--data_dir={data_dir} has {images.shape[-1]}-channel images, the model "
                         f"{backend.channels}")
    return images


# ----------------------------------------------------------------------------------------------
# Figures: each returns the HWC uint8 grid
# ----------------------------------------------------------------------------------------------

def samples_figure(backend, seed: int = 0, count: int = 16, psi: float | None = None,
                   columns: int | None = None) -> np.ndarray:
    return grid(to_uint8(backend.sample(latents(backend, seed, count), psi)), columns)


def reconstruction_figure(backend, images: np.ndarray, pairs_per_row: int = 4) -> np.ndarray:
    """Each original beside its reconstruction, ``pairs_per_row`` pairs a row."""
    _need_encoder(backend, "reconstruct")
    recon = to_uint8(decode(backend, backend.encode(images)))
    both = np.stack([images, recon], axis=1).reshape((-1,) + images.shape[1:])
    return grid(both, 2 * min(pairs_per_row, len(images)))


def interpolation_figure(backend, images: np.ndarray, steps: int = 8) -> np.ndarray:
    """Row: first original, ``steps`` decodings of lerp(w_a, w_b, t) for t in [0, 1], second original."""
    _need_encoder(backend, "interpolate")
    if len(images) < 2:
        raise ValueError("interpolation needs two images")
    if steps < 2:
        raise ValueError("--steps must be at least 2")
    w = backend.encode(images[:2])
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    between = to_uint8(decode(backend, w[0] + (w[1] - w[0]) * t))
    row = np.concatenate([images[:1], between, images[1:2]])
    return grid(row, len(row))


def crossovers(num_styles: int):
    """[(name, start, end)] of the non-empty coarse / middle / fine slot ranges."""
    out = []
    for name, start, end in CROSSOVERS:
        end = num_styles if end is None else min(end, num_styles)
        if start < end:
            out.append((name, start, end))
    return out


def stylemix_figure(backend, seed: int = 0, sources: int = 4, destinations: int = 3,
                    psi: float | None = None) -> np.ndarray:
    """StyleGAN's grid: top row the sources, left column the destinations, one block of
    destination rows per crossover (coarse, middle, fine); each cell is the destination's styles
    with the source's copied into the crossover's slots."""
    if not backend.has_styles:
        raise ValueError(f"stylemix needs ALAE's style model: the {backend.name} model has no styles")
    if backend.mlp or backend.num_styles < 2:
        raise ValueError("stylemix needs the style model: the MLP model has a single style")
    psi = backend.default_psi if psi is None else psi
    z = latents(backend, seed, sources + destinations)
    styles = styles_of(backend, z, psi)
    src, dst = styles[:sources], styles[sources:]
    src_img, dst_img = to_uint8(backend.synthesize(src)), to_uint8(backend.synthesize(dst))
    blank = np.full_like(src_img[:1], 255)
    cells = [blank, src_img]
    for _, start, end in crossovers(backend.num_styles):
        for d in range(destinations):
            mixed = np.repeat(dst[d:d + 1], sources, axis=0)
            mixed[:, start:end] = src[:, start:end]
            cells += [dst_img[d:d + 1], to_uint8(backend.synthesize(mixed))]
    return grid(np.concatenate(cells), sources + 1)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def _define_flags():
    from absl import flags

    flags.DEFINE_string("model", None, "run directory of alae_tf.train or SavedModel of alae_tf.export")
    flags.DEFINE_string("checkpoint", None, "checkpoint of a run directory (default: the latest)")
    flags.DEFINE_string("output", None, "PNG to write (default: <kind>.png in the current folder)")
    flags.DEFINE_integer("seed", 0, "seed of the latents (generate, stylemix)")
    flags.DEFINE_integer("count", 16, "samples (generate) or images (reconstruct)")
    flags.DEFINE_float("truncation_psi", None, "truncation psi (default: the model's)")
    flags.DEFINE_string("images", None, "folder of input images (reconstruct, interpolate)")
    flags.DEFINE_string("data_dir", None, "dataset FOLDER/NAME of the converter (reconstruct, interpolate)")
    flags.DEFINE_integer("steps", 8, "interpolation steps")
    flags.DEFINE_integer("sources", 4, "style-mixing sources (columns)")
    flags.DEFINE_integer("destinations", 3, "style-mixing destinations (rows per crossover)")


def make_figure(kind: str, flags_) -> np.ndarray:
    if not flags_.model:
        raise ValueError("--model is required")
    if flags_.count < 1:
        raise ValueError("--count must be at least 1")
    backend = open_model(flags_.model, flags_.checkpoint)
    if kind in ("reconstruct", "interpolate"):
        _need_encoder(backend, kind)
    if kind == "generate":
        return samples_figure(backend, flags_.seed, flags_.count, flags_.truncation_psi)
    if kind == "reconstruct":
        return reconstruction_figure(backend, read_images(backend, flags_.images, flags_.data_dir,
                                                          flags_.count))
    if kind == "interpolate":
        return interpolation_figure(backend, read_images(backend, flags_.images, flags_.data_dir, 2),
                                    flags_.steps)
    return stylemix_figure(backend, flags_.seed, flags_.sources, flags_.destinations,
                           flags_.truncation_psi)


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    if len(argv) != 2 or argv[1] not in KINDS:
        print(f"error: give one figure kind: {' | '.join(KINDS)}", file=sys.stderr)
        sys.exit(1)
    kind = argv[1]
    output = FLAGS.output or f"{kind}.png"
    try:
        image = make_figure(kind, FLAGS)
        if os.path.dirname(output):
            os.makedirs(os.path.dirname(output), exist_ok=True)
        save_png(output, image)
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {output} ({image.shape[1]}x{image.shape[0]})")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
