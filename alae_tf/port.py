"""python -m alae_tf.port --checkpoint=PATH.pth --flagfile=configs/ffhq.cfg --output_dir=RUN

Turns a checkpoint saved by the ALAE release's train_alae.py (PyTorch) into a run directory of
alae_tf: alae_tf.export, alae_tf.figures, alae_tf.evaluate and alae_tf.train (resume, or fine-tune
at the top LOD) take it as if it had been trained here. The architecture comes from the flags
(flags after the flagfile override it); the flagfile's --data_dir is not read. The file is read by
alae_tf.pth: no torch, and nothing in the file is run. See docs/port.md.

The release's Checkpointer saves {"models": {name: state_dict}, "auxiliary": {...}} with the
encoder as "discriminator", the generator as "generator", D as "mapping_tl", F as "mapping_fl", the
running average of w as "dlatent_avg" and the averaged copies as "<name>_s". Its layers keep
run-time weights (equalized learning rate applied by its optimizer, "LREQAdam"), torch layouts
(OIHW kernels, (out, in) dense weights, transposed-convolution weights flipped) and, in D's last
layer, two latent-sizes of outputs of which it uses one.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import tensorflow as tf

from alae_tf import pth

# Our network -> the release's model name in the checkpoint (the *_s copies are the averaged ones).
RELEASE_NAMES = {"E": "discriminator", "G": "generator", "D": "mapping_tl", "F": "mapping_fl"}
_BLUR = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


class PortError(ValueError):
    """A checkpoint that cannot become the model of the flags (one line, naming the tensor)."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One of our variables and the release tensor it is made from.

    ``kind`` says how the layouts differ: dense (out, in) -> (in, out); conv (O, I, kh, kw) -> (kh,
    kw, I, O); conv_t (the release's transposed convolution: I, O, kh, kw, spatially flipped
    against the convolution after nearest upsampling that we store); channel (1, C, 1, 1) -> (C,);
    const (1, C, 4, 4) -> (1, 4, 4, C); vector: the same. ``scale`` is the equalized-lr constant
    (or lr multiplier) that we multiply at run time and the release has already multiplied in.
    ``row``: D's last layer, the one output of two latent-sizes that the release reads.
    """

    net: str
    key: str
    variable: tf.Variable
    kind: str
    scale: float = 1.0
    row: int | None = None

    @property
    def source(self) -> str:
        return f"{RELEASE_NAMES[self.net]}.{self.key}"

    def release_shape(self, latent_size: int) -> tuple:
        """The shape the release's tensor must have."""
        s = tuple(self.variable.shape)
        if self.kind == "dense":
            return (2 * latent_size, s[0]) if self.row is not None else (s[1], s[0])
        if self.kind == "vector" and self.row is not None:
            return (2 * latent_size,)
        if self.kind in ("conv", "conv_t"):
            kh, kw, i, o = s
            return (o, i, kh, kw) if self.kind == "conv" else (i, o, kh, kw)
        if self.kind == "channel":
            return (1, s[0], 1, 1)
        if self.kind == "const":
            return (1, s[3], s[1], s[2])
        return s

    def layout(self, array: np.ndarray) -> np.ndarray:
        """The release's tensor (or its gradient) in our layout, before scaling."""
        a = np.asarray(array)
        if self.row is not None:
            a = a[self.row:self.row + 1]
        if self.kind == "dense":
            return a.T
        if self.kind == "conv":
            return a.transpose(2, 3, 1, 0)
        if self.kind == "conv_t":
            return a[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
        if self.kind == "channel":
            return a.reshape(-1)
        if self.kind == "const":
            return a.transpose(0, 2, 3, 1)
        return a

    def to_ours(self, array: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Our stored value from the release's run-time value."""
        return (self.layout(array) / self.scale).astype(dtype)

    def gradient_to_ours(self, gradient: np.ndarray) -> np.ndarray:
        """Our gradient (w.r.t. the stored value) from the release's (w.r.t. its run-time value)."""
        return self.layout(gradient) * self.scale


def _dense(net: str, key: str, layer, row: int | None = None) -> list[Entry]:
    return [Entry(net, f"{key}.weight", layer.kernel, "dense", layer.scale, row),
            Entry(net, f"{key}.bias", layer.bias, "vector", layer.lr_multiplier, row)]


def entries(nets, config) -> list[Entry]:
    """Every variable of ``nets`` (an alae_style Networks) with the release tensor it comes from."""
    c = config
    top = c.layer_count - 1
    out = []
    for i, layer in enumerate(nets.F.dense):
        out += _dense("F", f"map_blocks.{i}.fc", layer)
    for i, layer in enumerate(nets.D.dense):
        out += _dense("D", f"map_blocks.{i}", layer, c.latent_size if i == len(nets.D.dense) - 1 else None)
    for lod, block in enumerate(nets.G.blocks):
        key = f"decode_block.{lod}"
        if lod == 0:
            out.append(Entry("G", "const", block.const, "const"))
        else:  # the release fuses the upsampling into a transposed convolution from 128 px
            kind = "conv_t" if 4 * 2 ** lod >= 128 else "conv"
            out.append(Entry("G", f"{key}.conv_1.weight", block.conv0.kernel, kind, block.conv0.scale))
        out += [Entry("G", f"{key}.noise_weight_1", block.noise0.weight, "channel"),
                Entry("G", f"{key}.bias_1", block.bias0.bias, "channel"),
                *_dense("G", f"{key}.style_1", block.style0.affine),
                Entry("G", f"{key}.conv_2.weight", block.conv1.kernel, "conv", block.conv1.scale),
                Entry("G", f"{key}.noise_weight_2", block.noise1.weight, "channel"),
                Entry("G", f"{key}.bias_2", block.bias1.bias, "channel"),
                *_dense("G", f"{key}.style_2", block.style1.affine)]
        rgb = nets.G.to_rgb[lod]
        out += [Entry("G", f"to_rgb.{lod}.to_rgb.weight", rgb.kernel, "conv", rgb.scale),
                Entry("G", f"to_rgb.{lod}.to_rgb.bias", rgb.bias, "vector", rgb.lr_multiplier)]
    for lod, block in enumerate(nets.E.blocks):
        index = top - lod  # the release counts the encoder's blocks from the top resolution down
        key = f"encode_block.{index}"
        rgb = nets.E.from_rgb[lod]
        out += [Entry("E", f"from_rgb.{index}.from_rgb.weight", rgb.kernel, "conv", rgb.scale),
                Entry("E", f"from_rgb.{index}.from_rgb.bias", rgb.bias, "vector", rgb.lr_multiplier),
                Entry("E", f"{key}.conv_1.weight", block.conv0.kernel, "conv", block.conv0.scale),
                Entry("E", f"{key}.bias_1", block.conv0.bias, "channel", block.conv0.lr_multiplier),
                Entry("E", f"{key}.conv_2.weight", block.conv1.kernel, "conv", block.conv1.scale),
                Entry("E", f"{key}.bias_2", block.bias1.bias, "channel", block.bias1.lr_multiplier),
                *_dense("E", f"{key}.style_1", block.style0),
                *_dense("E", f"{key}.style_2", block.style1)]
    return out


def _is_blur(key: str) -> bool:
    return key.endswith("blur.weight")


def _strip_module(state: dict) -> dict:
    """A state dict saved from a (Distributed)DataParallel wrapper has "module." before each key."""
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def read_release(path: str) -> dict:
    """{model name: state dict} of a release checkpoint (pth.CheckpointError / PortError if not one)."""
    obj = pth.load(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("models"), dict):
        raise PortError(f"{path}: not a checkpoint of the ALAE release's train_alae.py (no 'models' "
                        f"dictionary at its top)")
    models = {}
    for name, state in obj["models"].items():
        if state is None:
            continue
        if not isinstance(state, dict):
            raise PortError(f"{path}: models.{name} is not a state dict")
        models[str(name)] = _strip_module(state)
    return models


def _sources(models: dict, path: str) -> tuple[dict, dict, list[str]]:
    """(our net -> model name) for the training networks and for the EMA ones, and notes."""
    train, ema, notes = {}, {}, []
    for net, name in RELEASE_NAMES.items():
        have, have_s = name in models, f"{name}_s" in models
        if not have and not have_s:
            raise PortError(f"{path}: models.{name} (and its averaged copy {name}_s) missing; the file holds "
                            f"{', '.join(sorted(models)) or 'no models'}")
        train[net] = name if have else f"{name}_s"
        ema[net] = f"{name}_s" if have_s else name
        if not have:
            notes.append(f"no models.{name}: the training {net} starts from the averaged {name}_s")
        if not have_s:
            notes.append(f"no models.{name}_s: the averaged {net} is a copy of {name}")
    return train, ema, notes


def _assign(nets, config, models: dict, sources: dict, path: str) -> int:
    """Sets every variable of ``nets`` from ``models``; returns how many."""
    table = entries(nets, config)
    used: dict[str, set] = {name: set() for name in set(sources.values())}
    values = []
    for e in table:
        name = sources[e.net]
        state = models[name]
        if e.key not in state:
            raise PortError(f"{path}: models.{name} has no tensor {e.key} that --model=alae_style with these "
                            f"flags needs (shape {e.release_shape(config.latent_size)})")
        value = state[e.key]
        if not isinstance(value, np.ndarray):
            raise PortError(f"{path}: models.{name}.{e.key} is not a tensor this reader can read "
                            f"({type(value).__name__})")
        want = e.release_shape(config.latent_size)
        if tuple(value.shape) != want:
            raise PortError(f"{path}: models.{name}.{e.key} has shape {tuple(value.shape)} but the flags need "
                            f"{want}")
        if not np.issubdtype(value.dtype, np.floating):
            raise PortError(f"{path}: models.{name}.{e.key} holds {value.dtype}, not floats")
        used[name].add(e.key)
        values.append((e.variable, e.to_ours(value.astype(np.float64))))
    for name in used:
        for key, value in models[name].items():
            if key in used[name]:
                continue
            if _is_blur(key) and isinstance(value, np.ndarray) and value.ndim == 4 and value.shape[1:] == (1, 3, 3):
                if not np.allclose(value, _BLUR[None, None], atol=1e-6):
                    raise PortError(f"{path}: models.{name}.{key} is not the [1, 2, 1] x [1, 2, 1] / 16 blur")
                continue
            raise PortError(f"{path}: models.{name}.{key} (shape {getattr(value, 'shape', '?')}) has no place in "
                            f"--model=alae_style with these flags (another encoder or generator than the "
                            f"release's default, or other --layer_count / channels?)")
    for variable, value in values:
        variable.assign(value)
    return len(values)


def _w_average(models: dict, config, path: str, notes: list[str]) -> np.ndarray:
    state = models.get("dlatent_avg")
    if state is None:
        notes.append("no models.dlatent_avg: w_avg is 0, truncation pulls towards 0")
        return np.zeros([config.latent_size], np.float32)
    buff = state.get("buff")
    want = (2 * config.layer_count, config.latent_size)
    if not isinstance(buff, np.ndarray) or buff.shape != want:
        raise PortError(f"{path}: models.dlatent_avg.buff has shape {getattr(buff, 'shape', None)} but the flags "
                        f"need {want}")
    if not np.allclose(buff, buff[:1], rtol=1e-5, atol=1e-6):
        raise PortError(f"{path}: models.dlatent_avg.buff holds different rows per style slot; alae_tf keeps "
                        f"one average of w")
    return buff[0].astype(np.float32)


def placement(config, kimg_per_lod: float, batch_sizes, learning_rates, fade: str, start_lod: int = 0) -> int:
    """Images seen at which the schedule of these flags reaches the top LOD with its fade-in done."""
    from alae_tf.schedule import Schedule

    if kimg_per_lod <= 0:
        raise PortError("the port reads no dataset, so it cannot count --epochs_per_lod in images: give "
                        "--kimg_per_lod (the configs in configs/ do)")
    schedule = Schedule(config.layer_count, kimg_per_lod * 1000, batch_sizes, learning_rates, fade=fade,
                        start_lod=start_lod)
    if not schedule.growing:
        return 0
    return int(math.ceil(schedule.lod_start(config.top_lod) + schedule.transition_images))


@dataclasses.dataclass
class Ported:
    """What port() did."""

    run_dir: str
    images_seen: int
    tensors: int
    train_sources: dict
    ema_sources: dict
    notes: list


def port(checkpoint: str, config, output_dir: str, images_seen: int, flags_text: str = "") -> Ported:
    """Writes the run directory ``output_dir`` from the release checkpoint ``checkpoint``.

    The directory appears whole or not at all; an existing non-empty one is an error.
    """
    from alae_tf import runs
    from alae_tf.models.alae import ALAE
    from alae_tf.training.loop import progress_variables

    if config.model != "alae_style":
        raise PortError(f"--model={config.model}: the port reads the release's StyleALAE (--model=alae_style)")
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise PortError(f"--output_dir={output_dir} exists and is not empty; choose a new run directory")
    models = read_release(checkpoint)
    train, ema, notes = _sources(models, checkpoint)
    model = ALAE(config)
    tensors = _assign(model.nets, config, models, train, checkpoint)
    _assign(model.ema, config, models, ema, checkpoint)
    model.w_avg.assign(_w_average(models, config, checkpoint, notes))
    progress = progress_variables()
    progress["images_seen"].assign(images_seen)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".port-", dir=parent)
    try:
        if flags_text:
            with open(os.path.join(tmp, "flags.txt"), "w") as fh:
                fh.write(flags_text)
        runs.save_config(tmp, config)
        ckpt = tf.train.Checkpoint(**model.checkpoint_items(), **progress)
        tf.train.CheckpointManager(ckpt, os.path.join(tmp, "checkpoints"), max_to_keep=1).save(
            checkpoint_number=images_seen)
        if os.path.isdir(output_dir):
            os.rmdir(output_dir)
        os.replace(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Ported(output_dir, images_seen, tensors, train, ema, notes)


def _define_flags():
    from absl import flags

    flags.DEFINE_string("checkpoint", None, "checkpoint (.pth) saved by the ALAE release's train_alae.py")


def main(argv) -> int:
    from absl import flags

    from alae_tf import train

    f = flags.FLAGS
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 1
    try:
        if not f.checkpoint:
            raise PortError("--checkpoint is required")
        if not f.output_dir:
            raise PortError("--output_dir is required")
        if f.model != "alae_style":
            raise PortError(f"--model={f.model}: the port reads the release's StyleALAE (--model=alae_style)")
        config = train.model_config(f, 4 * 2 ** (f.layer_count - 1), f.layer_count)
        seen = placement(config, f.kimg_per_lod, [int(b) for b in f.batch_sizes],
                         [float(x) for x in f.learning_rates], f.fade, f.start_lod)
        done = port(f.checkpoint, config, f.output_dir, seen, f.flags_into_string())
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    for note in done.notes:
        print(f"note: {note}")
    print(f"ported {done.tensors} tensors of {f.checkpoint} (training networks from "
          f"{', '.join(sorted(set(done.train_sources.values())))}; averaged from "
          f"{', '.join(sorted(set(done.ema_sources.values())))})")
    print(f"wrote {done.run_dir}: {config.resolution}x{config.resolution}, placed at {done.images_seen / 1000:g} "
          f"kimg (top LOD, fade-in done); alae_tf.train continues from there to --total_kimg")
    return 0


def run():
    from alae_tf import train
    from tfrecords_tools import cli

    _define_flags()
    try:
        train.check_flagfiles(sys.argv[1:])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    cli.run(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == "__main__":
    run()
