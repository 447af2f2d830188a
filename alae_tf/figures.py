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

from alae_tf.images import grid, save_png, to_float, to_uint8
from alae_tf.inference import Dataset, Model, first_line, open_model

KINDS = ("generate", "reconstruct", "interpolate", "stylemix")
# Style slots [start, end) copied from the source in the style-mixing grid (StyleGAN, ALAE paper).
CROSSOVERS = (("coarse", 0, 4), ("middle", 4, 8), ("fine", 8, None))


def _need_encoder(model: Model, kind: str):
    if not model.has_encoder:
        raise ValueError(f"{kind} needs a model with an encoder: {model.name} has none")


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


def read_images(model: Model, folder: str | None, data_dir: str | None, count: int) -> np.ndarray:
    if bool(folder) == bool(data_dir):
        raise ValueError("pass exactly one of --images=FOLDER and --data_dir=DATASET")
    if folder:
        return read_folder(folder, model.resolution, model.channels, count)
    return Dataset(data_dir, model.resolution, model.channels, f"--data_dir={data_dir}").pixels(count)


# ----------------------------------------------------------------------------------------------
# Figures: each returns the HWC uint8 grid
# ----------------------------------------------------------------------------------------------

def samples_figure(model: Model, seed: int = 0, count: int = 16, psi: float | None = None,
                   columns: int | None = None) -> np.ndarray:
    """``count`` samples; ``psi`` default the model's truncation (ALAE only)."""
    if psi is not None and not model.has_styles:
        raise ValueError(f"--truncation_psi: the {model.name} model has no truncation (ALAE only)")
    psi = model.truncation_psi if psi is None else psi
    return grid(to_uint8(model.generate(model.latents(seed, count), psi)), columns)


def reconstruction_figure(model: Model, images: np.ndarray, pairs_per_row: int = 4) -> np.ndarray:
    """Each original beside its reconstruction, ``pairs_per_row`` pairs a row."""
    _need_encoder(model, "reconstruct")
    recon = to_uint8(model.decode(model.encode(to_float(images))))
    both = np.stack([images, recon], axis=1).reshape((-1,) + images.shape[1:])
    return grid(both, 2 * min(pairs_per_row, len(images)))


def interpolation_figure(model: Model, images: np.ndarray, steps: int = 8) -> np.ndarray:
    """Row: first original, ``steps`` decodings of lerp(w_a, w_b, t) for t in [0, 1], second original."""
    _need_encoder(model, "interpolate")
    if len(images) < 2:
        raise ValueError("interpolation needs two images")
    if steps < 2:
        raise ValueError("--steps must be at least 2")
    w = model.encode(to_float(images[:2]))
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    between = to_uint8(model.decode(w[0] + (w[1] - w[0]) * t))
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


def stylemix_figure(model: Model, seed: int = 0, sources: int = 4, destinations: int = 3,
                    psi: float | None = None) -> np.ndarray:
    """StyleGAN's grid: top row the sources, left column the destinations, one block of
    destination rows per crossover (coarse, middle, fine); each cell is the destination's styles
    with the source's copied into the crossover's slots."""
    if not model.has_styles:
        raise ValueError(f"stylemix needs ALAE's style model: the {model.name} model has no styles")
    if model.num_styles < 2:
        raise ValueError("stylemix needs the style model: the MLP model has a single style")
    styles = model.styles(model.latents(seed, sources + destinations),
                          model.truncation_psi if psi is None else psi)
    src, dst = styles[:sources], styles[sources:]
    src_img, dst_img = to_uint8(model.synthesize(src)), to_uint8(model.synthesize(dst))
    cells = [np.full_like(src_img[:1], 255), src_img]
    for _, start, end in crossovers(model.num_styles):
        for d in range(destinations):
            mixed = np.repeat(dst[d:d + 1], sources, axis=0)
            mixed[:, start:end] = src[:, start:end]
            cells += [dst_img[d:d + 1], to_uint8(model.synthesize(mixed))]
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
    model = open_model(flags_.model, flags_.checkpoint)
    if kind in ("reconstruct", "interpolate"):
        _need_encoder(model, kind)
    if kind == "generate":
        return samples_figure(model, flags_.seed, flags_.count, flags_.truncation_psi)
    if kind == "reconstruct":
        return reconstruction_figure(model, read_images(model, flags_.images, flags_.data_dir,
                                                        flags_.count))
    if kind == "interpolate":
        return interpolation_figure(model, read_images(model, flags_.images, flags_.data_dir, 2),
                                    flags_.steps)
    return stylemix_figure(model, flags_.seed, flags_.sources, flags_.destinations,
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
        print(f"error: {first_line(e)}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {output} ({image.shape[1]}x{image.shape[0]})")


def run():
    from tfrecords_tools import cli

    _define_flags()
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
