"""python -m alae_tf.bench: the project's one benchmark command; prints one JSON object.

  --mode=step (default): seconds per full StyleALAE training iteration at the top LOD of
      --config, with the batch already in memory, and with --data_dir: with real batches
      from alae_tf.data as training reads them (uint8 crossed to the device, flipped by the
      reader). The reader's goal is real_over_memory near 1: training never waits on input.
      --flops adds the iteration's convolution FLOPs and this machine's rate for a lone
      convolution (the ceiling those FLOPs allow).
  --mode=convert: images per second of tfrecords_tools' converter on --images synthetic
      JPEGs of --size px, with 1 worker and with every core.

  python -m alae_tf.bench --config=quickstart --data_dir=data/mnist5k --mixed_precision
  python -m alae_tf.bench --mode=convert --images=1000 --size=256
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS

# Architectures: the quickstart's (configs/mnist_small.cfg), the release's MNIST StyleALAE, a
# 64 px CelebA StyleALAE, and 256 / 1024 px FFHQ ones for GPUs.
CONFIGS = {
    "quickstart": dict(resolution=32, channels=1, latent_size=128, layer_count=4, start_channels=16,
                       max_channels=64, mapping_layers=3, batch=32),
    "mnist32": dict(resolution=32, channels=1, latent_size=32, layer_count=4, start_channels=64,
                    max_channels=256, mapping_layers=4, batch=64),
    "celeba64": dict(resolution=64, channels=3, latent_size=256, layer_count=5, start_channels=64,
                     max_channels=256, mapping_layers=8, batch=32),
    "ffhq256": dict(resolution=256, channels=3, latent_size=512, layer_count=7, start_channels=64,
                    max_channels=512, mapping_layers=8, batch=32),
    "ffhq1024": dict(resolution=1024, channels=3, latent_size=512, layer_count=9, start_channels=16,
                     max_channels=512, mapping_layers=8, batch=16),
}
_CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def _shape(t) -> list[int]:
    return [int(d) for d in t.shape]


def _op_flops(op) -> int:
    """2 x multiply-adds of one convolution op of a traced graph (0 for other ops)."""
    t = op.type
    if t == "Conv2D":
        n, h, w, co = _shape(op.outputs[0])
        kh, kw, ci, _ = _shape(op.inputs[1])
    elif t == "Conv2DBackpropInput":  # a conv's input gradient, or conv2d_transpose
        n, h, w, co = _shape(op.inputs[2])
        kh, kw, ci, _ = _shape(op.inputs[1])
    elif t == "Conv2DBackpropFilter":
        n, h, w, co = _shape(op.inputs[2])
        kh, kw, ci, _ = _shape(op.outputs[0])
    elif t in ("DepthwiseConv2dNative", "DepthwiseConv2dNativeBackpropInput",
               "DepthwiseConv2dNativeBackpropFilter"):
        n, h, w, c = _shape(op.outputs[0] if t == "DepthwiseConv2dNative" else op.inputs[2])
        kh, kw = _shape(op.outputs[0] if t.endswith("Filter") else op.inputs[1])[:2]
        return 2 * n * h * w * c * kh * kw
    else:
        return 0
    return 2 * n * h * w * co * kh * kw * ci


def conv_flops(graph) -> int:
    """FLOPs (2 x multiply-adds) of the convolutions a traced tf.function graph runs: those that
    feed one of its outputs or a stateful op (e.g. a variable update). The rest (e.g. the
    unused half of a convolution's gradient) the runtime prunes, so they are not counted.
    Nested function calls are followed."""
    roots = [t.op for t in graph.outputs] + list(graph.control_outputs)
    roots += [op for op in graph.get_operations() if op.op_def.is_stateful]
    seen, stack, total = set(), list(roots), 0
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        total += _op_flops(op)
        if op.type in _CALLS:
            total += conv_flops(graph._get_function(op.get_attr("f").name).graph)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return total


def machine_conv_rate(dtype: str = "float32", seconds: float = 1.0) -> float:
    """GFLOP/s of one 3x3 convolution (256 channels, 16 px) alone on the default device, best of
    `seconds` of repeats; batch 32 on a CPU, 512 on a GPU (a small one would time the launch)."""
    import tensorflow as tf

    batch = 512 if tf.config.list_physical_devices("GPU") else 32
    x = tf.cast(tf.random.normal([batch, 16, 16, 256]), dtype)
    w = tf.cast(tf.random.normal([3, 3, 256, 256]), dtype)
    conv = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME")[0, 0, 0, 0])
    best = min(_seconds(lambda: float(conv()), 1) for _ in range(3))
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        best = min(best, _seconds(lambda: float(conv()), 1))
    return 2 * batch * 16 * 16 * 256 * 9 * 256 / best / 1e9


def _seconds(fn, steps: int) -> float:
    """Wall seconds per call of fn() over `steps` calls, waiting for the last result."""
    start = time.perf_counter()
    for _ in range(steps):
        out = fn()
    for v in (out.values() if isinstance(out, dict) else [out]):
        float(v)
    return (time.perf_counter() - start) / steps


def _figure(x: float) -> float:
    return float(f"{x:.4g}")


def run_step(name: str, steps: int = 20, warmup: int = 3, rounds: int = 3, batch: int = 0,
             data_dir: str | None = None, jit: bool = False, mixed_precision: bool = False,
             count_flops: bool = False) -> dict:
    """Seconds per training iteration with the batch in memory (and with real data from
    data_dir), each the median of `rounds` alternating rounds of `steps` iterations."""
    import keras
    import tensorflow as tf

    from alae_tf import data, precision
    from alae_tf.images import to_float
    from alae_tf.models.alae import ALAE, ALAEConfig

    arch = dict(CONFIGS[name])
    global_batch = batch or arch["batch"]
    del arch["batch"]
    policy = precision.mixed_policy() if mixed_precision else "float32"
    keras.mixed_precision.set_dtype_policy(policy)
    strategy = tf.distribute.get_strategy()
    model = ALAE(ALAEConfig(model="alae_style", jit=jit, **arch,
                            mixed_precision=precision.loss_scaling(policy)))
    lod, res, ch = model.config.top_lod, arch["resolution"], arch["channels"]
    alpha = tf.constant(1.0)

    def train(pixels):  # as the training loop: uint8 crossed to the device, floats made there
        out = strategy.run(lambda x: model.replica_step(to_float(x), alpha, lod=lod,
                                                        global_batch=global_batch), args=(pixels,))
        model.after_step(global_batch)
        return out

    in_memory = tf.cast(tf.random.uniform([global_batch, res, res, ch], 0, 256, tf.int32), tf.uint8)
    modes = {"memory": tf.function(lambda: train(in_memory))}
    if data_dir:
        batches = iter(strategy.distribute_datasets_from_function(
            lambda ctx: data.make_dataset(data_dir, res, ctx.get_per_replica_batch_size(global_batch),
                                          mirror=True, seed=0, input_context=ctx)))
        real = tf.function(lambda it: train(next(it)))
        modes["real_data"] = lambda: real(batches)
    times: dict = {mode: [] for mode in modes}
    for mode, fn in modes.items():
        _seconds(fn, max(1, warmup))
    for _ in range(rounds):
        for mode, fn in modes.items():
            times[mode].append(_seconds(fn, steps))
    seconds = {mode: statistics.median(t) for mode, t in times.items()}
    result = {"config": name, "batch": global_batch, "resolution": res, "jit": jit, "policy": policy,
              "seconds_per_step": round(seconds["memory"], 4),
              "images_per_second": round(global_batch / seconds["memory"], 2)}
    if data_dir:
        result.update(data_dir=data_dir, seconds_per_step_real_data=round(seconds["real_data"], 4),
                      images_per_second_real_data=round(global_batch / seconds["real_data"], 2),
                      real_over_memory=round(seconds["real_data"] / seconds["memory"], 3))
    if count_flops:
        gflop = conv_flops(modes["memory"].get_concrete_function().graph) / 1e9
        rate = machine_conv_rate(keras.mixed_precision.global_policy().compute_dtype)
        result.update(conv_gflop_per_iteration=_figure(gflop),
                      conv_gflops_achieved=_figure(gflop / seconds["memory"]),
                      conv_gflops_machine=_figure(rate),
                      images_per_second_conv_bound=_figure(global_batch * rate / gflop))
    gpus = tf.config.list_physical_devices("GPU")
    result["device"] = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
                        if gpus else f"CPU x{os.cpu_count()} ({platform.processor() or platform.machine()})")
    result["tensorflow"] = tf.__version__
    return result


def synthetic_jpegs(folder: str, count: int, size: int, seed: int = 0) -> None:
    """`count` smooth random RGB JPEGs of size x size (quality 90) in folder."""
    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(count):
        f = rng.uniform(1, 8, (3, 2)).astype(np.float32)
        img = np.stack([127 + 110 * np.sin(f[c, 0] * 6 * xx + i) * np.cos(f[c, 1] * 6 * yy)
                        for c in range(3)], -1) + rng.normal(0, 10, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f"{i:06d}.jpg"), quality=90)


def run_convert(images: int, size: int, work_dir: str | None = None) -> dict:
    """The converter's figures (its manifest's 'conversion') on synthetic JPEGs, with 1 worker
    and with every core."""
    from tfrecords_tools.writer import convert

    with tempfile.TemporaryDirectory(dir=work_dir) as work:
        jpgs = os.path.join(work, "jpg")
        synthetic_jpegs(jpgs, images, size)
        runs = []
        for workers in sorted({1, os.cpu_count() or 1}):
            (manifest,) = convert(source="images", input=jpgs, output_dir=os.path.join(work, str(workers)),
                                  name="b", resolution=size, workers=workers, parts=4, log_every_s=1e9)
            runs.append(dict(manifest["conversion"], images=manifest["count"]))
    return {"mode": "convert", "size": size, "runs": runs}


def _define_flags():
    """The command's flags (defined only when run as a command, so importing this module next
    to alae_tf.train defines nothing twice)."""
    flags.DEFINE_enum("mode", "step", ["step", "convert"], "What to measure (see the module doc).")
    flags.DEFINE_enum("config", "quickstart", list(CONFIGS), "--mode=step: architecture.")
    flags.DEFINE_string("data_dir", None, "--mode=step: also time real batches of this dataset.")
    flags.DEFINE_integer("steps", 20, "--mode=step: iterations per round.")
    flags.DEFINE_integer("rounds", 3, "--mode=step: alternating rounds per mode (median).")
    flags.DEFINE_integer("warmup", 3, "--mode=step: untimed iterations first (tracing, autotuning).")
    flags.DEFINE_integer("batch", 0, "--mode=step: global batch; 0: the config's.")
    flags.DEFINE_boolean("jit", False, "--mode=step: XLA-compile the gradient computations.")
    flags.DEFINE_boolean("mixed_precision", False, "--mode=step: as alae_tf.train's --mixed_precision.")
    flags.DEFINE_boolean("flops", False, "--mode=step: also count the convolution FLOPs.")
    flags.DEFINE_integer("images", 1000, "--mode=convert: synthetic images.")
    flags.DEFINE_integer("size", 256, "--mode=convert: their side in pixels.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = FLAGS
    if f.mode == "convert":
        result = run_convert(f.images, f.size)
    else:
        result = run_step(f.config, f.steps, f.warmup, f.rounds, f.batch, f.data_dir, f.jit,
                          f.mixed_precision, f.flops)
    json.dump(result, sys.stdout)
    print()


def run():
    from tfrecords_tools import cli

    _define_flags()
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
