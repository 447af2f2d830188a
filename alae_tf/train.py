"""python -m alae_tf.train --flagfile=configs/ffhq.cfg: train ALAE / StyleALAE.

Running the same command again resumes from the run directory's last checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys

from absl import app, flags, logging

from alae_tf import precision
from alae_tf.models import MODELS
from alae_tf.training import strategy as strategy_lib  # defines --strategy
from tfrecords_tools import cli

FLAGS = flags.FLAGS

# Model.
flags.DEFINE_enum("model", "alae_style", list(MODELS), "Network family: ALAE or a baseline.")
flags.DEFINE_integer("latent_size", 512, "Size of z and w.")
flags.DEFINE_integer("layer_count", 9, "Style model LODs: resolution 4 * 2 ** (layer_count - 1).")
flags.DEFINE_integer("resolution", 0, "Training resolution; 0: from layer_count (style) or the data (mlp).")
flags.DEFINE_integer("start_channels", 16, "Feature maps at the top resolution.")
flags.DEFINE_integer("max_channels", 512, "Cap on feature maps.")
flags.DEFINE_integer("mapping_layers", 8, "Layers of the mapping network F.")
flags.DEFINE_integer("channels", 3, "Image channels (1 or 3).")
flags.DEFINE_integer("fused_from", 4, "Resolution from which up/down convs use the fused (transposed / strided 4x4) "
                     "form; the same function with fewer FLOPs (release: 128).")
# Objective.
flags.DEFINE_float("r1_gamma", 10.0, "R1 weight gamma (penalty gamma/2 * |grad|^2).")
flags.DEFINE_float("style_mixing_prob", 0.9, "Probability of style mixing in the D and G steps.")
flags.DEFINE_float("ema_halflife_kimg", 10.0, "Half-life of the EMA networks in thousands of images.")
flags.DEFINE_float("ttur", 1.0, "Multiplier of the E and D learning rate (two time-scale update rule).")
flags.DEFINE_float("encoder_lr_mult", 1.0, "Extra multiplier of the encoder's learning rate.")
flags.DEFINE_float("lae_weight", 1.0, "Weight of the latent autoencoder loss.")
flags.DEFINE_boolean("z_regression", False, "Latent AE step regresses z instead of w.")
flags.DEFINE_float("truncation_psi", 0.7, "Truncation psi for inference.")
flags.DEFINE_integer("truncation_cutoff", 8, "Style slots below this index are truncated.")
# Baselines: autoencoders.
flags.DEFINE_string("ae_arch", "mlp", "ae, dae, sae, vae: mlp (fully connected, --ae_hidden) or conv (stride-2 convs "
                    "from --start_channels, capped at --max_channels).")
flags.DEFINE_list("ae_hidden", ["1024", "1024"], "MLP autoencoders: hidden widths from the image to the code.")
flags.DEFINE_boolean("tied_weights", False, "MLP ae, dae, sae: the decoder uses the encoder's kernels transposed.")
flags.DEFINE_string("noise", "gaussian", "dae: input corruption, gaussian or dropout.")
flags.DEFINE_float("noise_level", 0.25, "dae: Gaussian std (pixels in [-1, 1]) or dropout probability.")
flags.DEFINE_string("sparsity", "l1", "sae: l1 (sum |h| of a linear code) or kl (KL of a sigmoid code's batch "
                    "mean activation from --sparsity_target).")
flags.DEFINE_float("sparsity_weight", 1e-3, "sae: weight of the sparsity penalty.")
flags.DEFINE_float("sparsity_target", 0.05, "sae --sparsity=kl: target mean activation rho.")
flags.DEFINE_float("vae_sigma", 0.2, "vae: std of the Gaussian decoder p(x|z) (pixels in [-1, 1]).")
flags.DEFINE_string("rnn_cell", "lstm", "rae: the encoder's and the decoder's RNN, lstm or gru.")
flags.DEFINE_integer("rnn_units", 256, "rae: units of each RNN.")
flags.DEFINE_list("greedy_kimg", [], "ae --ae_arch=mlp: greedy layer-wise training, thousands of images per "
                  "encoder/decoder pair, outer pair first (a shorter list repeats its last value); the rest "
                  "of --total_kimg fine-tunes the assembled stack end to end. Empty: end-to-end training.")
flags.DEFINE_float("greedy_finetune_lr_mult", 0.1, "ae --greedy_kimg: the fine-tuning of the assembled stack "
                   "runs at this multiple of --learning_rates.")
# Baselines: GANs.
flags.DEFINE_float("recon_vs_gan_weight", 1e-6, "vaegan: weight of the feature-space reconstruction against the "
                   "GAN term in the decoder's objective (Larsen et al.'s code: 1e-6).")
flags.DEFINE_float("equilibrium", 0.68, "vaegan: the discriminator BCE the balancing aims at.")
flags.DEFINE_float("margin", 0.35, "vaegan: a BCE below equilibrium - margin stops the discriminator, one above "
                   "equilibrium + margin the decoder's GAN term.")
# Schedule.
flags.DEFINE_list("batch_sizes", ["128"], "Global batch per LOD (a shorter list repeats its last value).")
flags.DEFINE_list("learning_rates", ["0.0015"], "Learning rate per LOD (a shorter list repeats its last).")
flags.DEFINE_float("epochs_per_lod", 16, "Epochs per LOD; the first half of each LOD above 0 fades in.")
flags.DEFINE_float("kimg_per_lod", 0, "Thousands of images per LOD; overrides --epochs_per_lod when > 0.")
flags.DEFINE_float("epochs", 300, "Length of training in epochs.")
flags.DEFINE_float("total_kimg", 0, "Length of training in thousands of images; overrides --epochs when > 0.")
flags.DEFINE_float("time_limit_minutes", 0, "When > 0, stop after this many minutes of training in this process "
                   "(grids and a checkpoint first, exit 0); the same command continues.")
flags.DEFINE_enum("fade", "cosine", ["cosine", "linear"], "Fade-in ramp: cosine (release) or linear (StyleGAN).")
flags.DEFINE_integer("start_lod", 0, "First LOD trained.")
# Data and run.
flags.DEFINE_string("data_dir", None, "Dataset from tfrecords_tools.convert: FOLDER/NAME, or a folder "
                    "holding one dataset.")
flags.DEFINE_string("prepare", None, "When --data_dir has no dataset, convert this offline source into it "
                    "first (mnist5k).")
flags.DEFINE_integer("prepare_test_count", 1000, "With --prepare: images held out as <name>_test.")
flags.DEFINE_string("output_dir", None, "Run directory: flags, checkpoints, TensorBoard, PNG grids.")
flags.DEFINE_boolean("mirror", False, "Random horizontal flips of the reals (made by the reader).")
flags.DEFINE_integer("data_memory_mb", 256, "Memory budget (MiB per worker) of the reader's shuffle "
                     "buffer of records.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of every random draw.")
flags.DEFINE_float("snapshot_kimg", 20, "Image grids every this many thousand images.")
flags.DEFINE_float("checkpoint_kimg", 50, "Checkpoint every this many thousand images.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
flags.DEFINE_float("log_seconds", 10, "Seconds between progress lines.")
flags.DEFINE_boolean("jit", False, "XLA-compile the gradient computations.")
flags.DEFINE_boolean("mixed_precision", False, "Reduced-precision compute: float16 with loss scaling "
                     "on a GPU, bfloat16 on a CPU with AVX512-BF16 / AMX, float32 (with a warning) elsewhere.")
# Reliability.
flags.DEFINE_enum("nan_policy", "stop", ["stop", "rollback"], "On a non-finite loss: stop (keeping the last "
                  "good checkpoint), or roll back to it and continue with the learning rate halved.")
flags.DEFINE_integer("max_rollbacks", 3, "With --nan_policy=rollback: rollbacks allowed before stopping.")
flags.DEFINE_boolean("deterministic", False, "TF op determinism and a data order that a resume reproduces "
                     "exactly (a resume re-reads the batches consumed since the LOD began).")
flags.DEFINE_boolean("skip_corrupt_records", False, "Skip corrupt or truncated records (counted and "
                     "reported) instead of stopping with an error naming the file.")


def prepare_data(data_dir: str, source: str, test_count: int):
    """Converts the offline ``source`` into ``data_dir`` (FOLDER/NAME) with tfrecords_tools.convert."""
    if source != "mnist5k":
        raise ValueError(f"--prepare supports only the offline source mnist5k, got {source!r}")
    folder, name = os.path.split(os.path.normpath(data_dir))
    logging.info("no dataset at %s: converting %s with tfrecords_tools.convert", data_dir, source)
    cmd = [sys.executable, "-m", "tfrecords_tools.convert", "--source=mnist5k", f"--output_dir={folder or '.'}",
           f"--name={name}", "--resolution=32", "--channels=1", "--labels", f"--test_count={test_count}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ValueError(f"preparing {data_dir} from {source} failed: {tail}")


# Progressive models train LOD by LOD up to --layer_count; the others at the data's resolution.
PROGRESSIVE = ("alae_style", "stylegan")


def from_flags(cls, f, **derived):
    """The dataclass ``cls`` with each field from ``derived`` or else the flag of the same name."""
    names = {field.name for field in dataclasses.fields(cls)}
    values = {name: f[name].value for name in names if name in f}
    values.update({k: v for k, v in derived.items() if k in names})
    return cls(**values)


def model_config(f, resolution: int, layer_count: int):
    """The config of --model from the flags. Derived: the resolution and layer count (from the data
    and --layer_count), the loss scaling (from the policy --mixed_precision set), ``hidden``
    (from --ae_hidden), ``greedy_kimg`` (from --greedy_kimg)."""
    import keras

    try:
        hidden = tuple(int(h) for h in f.ae_hidden)
    except ValueError:
        raise ValueError(f"--ae_hidden must be comma-separated integers, got {','.join(f.ae_hidden)}") from None
    try:
        greedy_kimg = tuple(float(k) for k in f.greedy_kimg)
    except ValueError:
        raise ValueError(f"--greedy_kimg must be comma-separated numbers, got {','.join(f.greedy_kimg)}") from None
    return from_flags(MODELS[f.model][1], f, resolution=resolution, layer_count=layer_count, hidden=hidden,
                      greedy_kimg=greedy_kimg,
                      mixed_precision=precision.loss_scaling(keras.mixed_precision.global_policy().name))


def check_greedy_budget(config, total_images: int):
    """The greedy stages of an ``ae`` (--greedy_kimg) must fit in the training's images."""
    greedy = getattr(config, "greedy_images", 0)
    if greedy > total_images:
        raise ValueError(f"--greedy_kimg: the greedy pairs take {greedy / 1000:g} kimg "
                         f"({', '.join(f'{k:g}' for k in config.greedy_kimg)}), more than the "
                         f"{total_images / 1000:g} kimg of training (--total_kimg / --epochs)")


def build(argv_flags=FLAGS):
    """Flags -> (model factory, schedule, strategy, loop config), after checking the data."""
    import keras

    from alae_tf import data as data_lib
    from alae_tf.schedule import Schedule
    from alae_tf.training.loop import LoopConfig

    f = argv_flags
    strategy = strategy_lib.make_strategy(f.strategy)  # first: multiworker needs a fresh runtime
    if f.prepare and not _has_dataset(f.data_dir):
        prepare_data(f.data_dir, f.prepare, f.prepare_test_count)
    if f.deterministic:
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(f.seed)
    info = data_lib.describe(f.data_dir, check_sizes=not f.skip_corrupt_records)
    progressive = f.model in PROGRESSIVE
    if progressive:
        resolution = 4 * 2 ** (f.layer_count - 1)
        if f.resolution and f.resolution != resolution:
            raise ValueError(f"--resolution={f.resolution} disagrees with --layer_count={f.layer_count} "
                             f"({resolution}x{resolution})")
        needed = list(range(2, int(math.log2(resolution)) + 1))
    else:
        resolution = f.resolution or info.resolution
        needed = [int(math.log2(resolution))]
    missing = [r for r in needed if r not in info.levels]
    if missing:
        raise ValueError(f"--data_dir={f.data_dir} lacks level(s) {', '.join(f'r{r:02d}' for r in missing)} "
                         f"(has {', '.join(f'r{r:02d}' for r in info.levels)}) needed for "
                         f"{resolution}x{resolution} training")
    if info.channels != f.channels:
        raise ValueError(f"--channels={f.channels} but --data_dir={f.data_dir} has {info.channels}-channel images")
    if f.mixed_precision:
        policy = precision.mixed_policy()
        keras.mixed_precision.set_dtype_policy(policy)
        if policy == "float32":
            logging.warning("--mixed_precision: this machine has no GPU and no bfloat16 instructions "
                            "(AVX512-BF16 / AMX): training in float32")
        else:
            logging.info("--mixed_precision: %s", policy)

    layer_count = f.layer_count if progressive else 1
    try:
        batch_sizes = [int(b) for b in f.batch_sizes]
        learning_rates = [float(x) for x in f.learning_rates]
    except ValueError as e:
        raise ValueError(f"--batch_sizes / --learning_rates must be comma-separated numbers: {e}") from None
    if f.kimg_per_lod > 0:
        images_per_lod, transition = f.kimg_per_lod * 1000, None
    else:
        images_per_lod = f.epochs_per_lod * info.count
        transition = (f.epochs_per_lod // 2) * info.count
    schedule = Schedule(layer_count, images_per_lod if progressive else 0, batch_sizes,
                        learning_rates, fade=f.fade, transition_images=transition, start_lod=f.start_lod
                        if progressive else 0)
    total_images = int(f.total_kimg * 1000) if f.total_kimg > 0 else int(f.epochs * info.count)
    config = model_config(f, resolution, layer_count)
    check_greedy_budget(config, total_images)
    model_cls = MODELS[f.model][0]
    loop = from_flags(LoopConfig, f, total_images=total_images, snapshot_images=max(1, int(f.snapshot_kimg * 1000)),
                      checkpoint_images=max(1, int(f.checkpoint_kimg * 1000)), data_memory_bytes=f.data_memory_mb << 20,
                      time_limit_seconds=f.time_limit_minutes * 60)

    def model_fn():
        return model_cls(config, learning_rate=schedule.learning_rates[schedule.phase(0).lod])

    return model_fn, schedule, strategy, loop


def _has_dataset(data_dir: str) -> bool:
    from alae_tf import data as data_lib
    from tfrecords_tools.format import DatasetError
    try:
        data_lib.describe(data_dir)
        return True
    except DatasetError:
        return False


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from alae_tf import runs
    from alae_tf.training.loop import Interrupted, Trainer, TrainingError

    try:
        model_fn, schedule, strategy, loop = build()
        if strategy_lib.is_chief(strategy):
            os.makedirs(loop.output_dir, exist_ok=True)
            with open(os.path.join(loop.output_dir, "flags.txt"), "w") as fh:
                fh.write(f"# cwd: {os.getcwd()}\n{FLAGS.flags_into_string()}")  # for relative paths
        trainer = Trainer(model_fn, schedule, strategy, loop)
        if trainer.chief:
            runs.save_config(loop.output_dir, trainer.model.config)
        terms = trainer.run()
    except (ValueError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        logging.warning("%s", e)
        return 128 + e.signum
    logging.info("done: %s", ", ".join(f"{k} {v:.4f}" for k, v in sorted(terms.items())) or "nothing to do")
    logging.info("run directory: %s", loop.output_dir)
    return 0


def check_flagfiles(argv: list[str]):
    """Every line of every --flagfile (nested too) is blank, a comment or one flag.

    absl would take "--total_kimg=200  # short run" as the value "200  # short run"; this
    raises ValueError naming the file and line instead.
    """
    pending = [a.split("=", 1)[1] for a in argv if a.startswith(("--flagfile=", "-flagfile="))]
    seen = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            with open(path) as fh:
                lines = fh.read().splitlines()
        except OSError as e:
            raise ValueError(f"--flagfile={path}: cannot read ({e.strerror or e})") from None
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith(("#", "//")):
                continue
            if not line.startswith("-"):
                raise ValueError(f"{path}:{number}: not a flag: {line!r} (flag lines start with --)")
            if re.search(r"\s(#|//)", line):
                raise ValueError(f"{path}:{number}: inline comment in {line!r}: put comments on their "
                                 f"own line (absl would read the comment as part of the value)")
            if line.startswith(("--flagfile=", "-flagfile=")):
                pending.append(line.split("=", 1)[1])


def run():
    flags.mark_flags_as_required(["data_dir", "output_dir"])
    try:
        check_flagfiles(sys.argv[1:])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    cli.run(lambda argv: sys.exit(main(argv)), __name__)


_parse_flags = cli.parse_flags  # absl's parsing, its errors as one `error:` line


if __name__ == "__main__":
    run()
