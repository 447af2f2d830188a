"""PNG figures from a run directory or an exported SavedModel.

    python -m alae_tf.figures generate    --model=RUN_OR_EXPORT --output=samples.png
                                          [--seed --count --truncation_psi]
    python -m alae_tf.figures reconstruct --model=... --images=FOLDER | --data_dir=DATASET [--count]
    python -m alae_tf.figures interpolate --model=... --images=FOLDER | --data_dir=DATASET [--steps]
    python -m alae_tf.figures stylemix    --model=... [--seed --sources --destinations --truncation_psi]
                                          [--images=FOLDER | --data_dir=DATASET: real images]
    python -m alae_tf.figures traverse    --model=RUN --direction=NAME [--directions=FOLDER]
                                          --images=FOLDER | --data_dir=DATASET [--count --steps --range]
    python -m alae_tf.figures grid4       --model=... --images=FOLDER | --data_dir=DATASET [--steps]
    python -m alae_tf.figures lods        --model=... [--seed --count --truncation_psi]

Every figure is deterministic (no per-pixel noise). Baselines (ae, dae, sae, vae, ...) have
generate, and reconstruct / interpolate / grid4 when they encode; stylemix and lods need ALAE's
style model, traverse an encoder and a direction of alae_tf.directions. See docs/export.md and
docs/editing.md.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from alae_tf.images import grid, save_png, to_float, to_uint8
from alae_tf.inference import Dataset, Model, first_line, open_model

KINDS = ("generate", "reconstruct", "interpolate", "stylemix", "traverse", "grid4", "lods")
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


def grid4_figure(model: Model, images: np.ndarray, steps: int = 6) -> np.ndarray:
    """``steps`` x ``steps`` decodings of the bilinear blend of four codes: the corners (top left,
    top right, bottom left, bottom right) are the reconstructions of ``images[:4]`` in that order."""
    _need_encoder(model, "grid4")
    if len(images) < 4:
        raise ValueError(f"grid4 needs four images, got {len(images)}")
    if steps < 2:
        raise ValueError("--steps must be at least 2")
    w = model.encode(to_float(images[:4]))
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    v, u = np.meshgrid(t, t, indexing="ij")  # v down the rows, u across
    v, u = v.reshape(-1, 1), u.reshape(-1, 1)
    blend = (1 - v) * ((1 - u) * w[0] + u * w[1]) + v * ((1 - u) * w[2] + u * w[3])
    return grid(to_uint8(model.decode(blend)), steps)


def traverse_figure(model: Model, images: np.ndarray, direction, steps: int = 7,
                    extent: float = 4.0) -> np.ndarray:
    """One row per image: the original, then decodings of its code moved t scales along
    ``direction`` for ``steps`` values of t evenly from -``extent`` to +``extent``."""
    _need_encoder(model, "traverse")
    if steps < 2:
        raise ValueError("--steps must be at least 2")
    if direction.vector.shape[0] != model.latent_size:
        raise ValueError(f"direction {direction.name!r} has {direction.vector.shape[0]} dimensions, "
                         f"the model's codes {model.latent_size}")
    w = model.encode(to_float(images))
    ts = np.linspace(-extent, extent, steps, dtype=np.float32)
    rows = []
    for i in range(len(images)):
        moved = direction.move(np.repeat(w[i:i + 1], steps, axis=0), ts)
        rows += [images[i:i + 1], to_uint8(model.decode(moved))]
    return grid(np.concatenate(rows), steps + 1)


def lods_figure(model: Model, seed: int = 0, count: int = 4, psi: float | None = None) -> np.ndarray:
    """One row per sample: the same styles drawn at every resolution of the progressive growth
    (4x4 first), each enlarged to the top resolution by repeating pixels."""
    if not model.has_styles:
        raise ValueError(f"lods needs ALAE's style model: the {model.name} model has no styles")
    styles = model.styles(model.latents(seed, count), model.truncation_psi if psi is None else psi)
    by_res = model.synthesize_lods(styles)
    cells = []
    for i in range(count):
        for res in sorted(by_res):
            k = model.resolution // res
            cells.append(to_uint8(by_res[res][i]).repeat(k, axis=0).repeat(k, axis=1)[None])
    return grid(np.concatenate(cells), len(by_res))


def crossovers(num_styles: int):
    """[(name, start, end)] of the non-empty coarse / middle / fine slot ranges."""
    out = []
    for name, start, end in CROSSOVERS:
        end = num_styles if end is None else min(end, num_styles)
        if start < end:
            out.append((name, start, end))
    return out


def stylemix_figure(model: Model, seed: int = 0, sources: int = 4, destinations: int = 3,
                    psi: float | None = None, images: np.ndarray | None = None) -> np.ndarray:
    """StyleGAN's grid: top row the sources, left column the destinations, one block of
    destination rows per crossover (coarse, middle, fine); each cell is the destination's styles
    with the source's copied into the crossover's slots. With ``images`` (real images, the first
    ``sources`` the sources, the next ``destinations`` the destinations) the styles are their
    codes E(x) in every slot and the top row and left column show the images themselves."""
    if not model.has_styles:
        raise ValueError(f"stylemix needs ALAE's style model: the {model.name} model has no styles")
    if model.num_styles < 2:
        raise ValueError("stylemix needs the style model: the MLP model has a single style")
    if images is None:
        styles = model.styles(model.latents(seed, sources + destinations),
                              model.truncation_psi if psi is None else psi)
        heads = to_uint8(model.synthesize(styles))
    else:
        _need_encoder(model, "stylemix of real images")
        if len(images) < sources + destinations:
            raise ValueError(f"stylemix of real images needs {sources + destinations} images "
                             f"(--sources + --destinations), got {len(images)}")
        images = images[:sources + destinations]
        w = model.encode(to_float(images))
        styles, heads = np.repeat(w[:, None], model.num_styles, axis=1), images
    src, dst = styles[:sources], styles[sources:]
    cells = [np.full_like(heads[:1], 255), heads[:sources]]
    for _, start, end in crossovers(model.num_styles):
        for d in range(destinations):
            mixed = np.repeat(dst[d:d + 1], sources, axis=0)
            mixed[:, start:end] = src[:, start:end]
            cells += [heads[sources + d:sources + d + 1], to_uint8(model.synthesize(mixed))]
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
    flags.DEFINE_integer("steps", 8, "interpolation steps (interpolate, traverse, grid4: its side)")
    flags.DEFINE_string("direction", None, "traverse: the direction's name (alae_tf.directions)")
    flags.DEFINE_string("directions", None, "traverse: folder of direction files (default MODEL/directions)")
    flags.DEFINE_float("range", 4.0, "traverse: steps span -range..+range scales of the direction")
    flags.DEFINE_integer("sources", 4, "style-mixing sources (columns)")
    flags.DEFINE_integer("destinations", 3, "style-mixing destinations (rows per crossover)")


def make_figure(kind: str, flags_) -> np.ndarray:
    if not flags_.model:
        raise ValueError("--model is required")
    if flags_.count < 1:
        raise ValueError("--count must be at least 1")
    model = open_model(flags_.model, flags_.checkpoint)
    if kind in ("reconstruct", "interpolate", "traverse", "grid4"):
        _need_encoder(model, kind)
    psi = flags_.truncation_psi
    if kind == "generate":
        return samples_figure(model, flags_.seed, flags_.count, psi)
    if kind == "lods":
        return lods_figure(model, flags_.seed, flags_.count, psi)
    if kind == "reconstruct":
        return reconstruction_figure(model, read_images(model, flags_.images, flags_.data_dir,
                                                        flags_.count))
    if kind == "interpolate":
        return interpolation_figure(model, read_images(model, flags_.images, flags_.data_dir, 2),
                                    flags_.steps)
    if kind == "grid4":
        return grid4_figure(model, read_images(model, flags_.images, flags_.data_dir, 4), flags_.steps)
    if kind == "traverse":
        return traverse_figure(model, read_images(model, flags_.images, flags_.data_dir, flags_.count),
                               _direction(model, flags_), flags_.steps, flags_.range)
    real = None
    if flags_.images or flags_.data_dir:
        real = read_images(model, flags_.images, flags_.data_dir, flags_.sources + flags_.destinations)
    return stylemix_figure(model, flags_.seed, flags_.sources, flags_.destinations, psi, real)


def _direction(model: Model, flags_):
    from alae_tf import directions

    if not flags_.direction:
        raise ValueError("traverse needs --direction=NAME (python -m alae_tf.directions writes them)")
    folder = flags_.directions or os.path.join(flags_.model, directions.DIRECTORY)
    found = directions.load(folder, model.latent_size)
    if flags_.direction not in found:
        raise ValueError(f"--direction={flags_.direction}: not in {folder} "
                         f"({', '.join(found) or 'no direction files'})")
    return found[flags_.direction]


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
