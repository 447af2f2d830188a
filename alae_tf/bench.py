"""python -m alae_tf.bench --config=mnist32|celeba64|ffhq256|ffhq1024 --iters=N

Images per second of full three-step ALAE iterations on random data at the top LOD, and the
time of each step alone. Prints one JSON object.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS

# Architectures of the speed goal: the release's MNIST StyleALAE and a 64 px CelebA StyleALAE;
# ffhq configs at 256 and 1024 px for GPUs.
CONFIGS = {
    "mnist32": dict(resolution=32, channels=1, latent_size=32, layer_count=4, start_channels=64,
                    max_channels=256, mapping_layers=4, batch=64),
    "celeba64": dict(resolution=64, channels=3, latent_size=256, layer_count=5, start_channels=64,
                     max_channels=256, mapping_layers=8, batch=32),
    "ffhq256": dict(resolution=256, channels=3, latent_size=512, layer_count=7, start_channels=64,
                    max_channels=512, mapping_layers=8, batch=32),
    "ffhq1024": dict(resolution=1024, channels=3, latent_size=512, layer_count=9, start_channels=16,
                     max_channels=512, mapping_layers=8, batch=16),
}


def _time(fn, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        out = fn()
    _block(out if warmup else fn())
    start = time.perf_counter()
    for _ in range(iters):
        out = fn()
    _block(out)
    return (time.perf_counter() - start) / iters


def _figure(x: float) -> float:
    return float(f"{x:.4g}")


def _block(out):
    for v in (out.values() if isinstance(out, dict) else [out]):
        float(v)


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


def machine_conv_rate(dtype: str = "float32", batch: int | None = None, size: int = 16,
                      channels: int = 256, seconds: float = 1.0) -> float:
    """GFLOP/s of one 3x3 convolution alone on the default device (best of repeats): what the
    hardware and TensorFlow's kernels give when nothing else runs. batch: 32 on a CPU, 512 on
    a GPU (a small one would only time the launch)."""
    import tensorflow as tf

    if batch is None:
        batch = 512 if tf.config.list_physical_devices("GPU") else 32
    x = tf.cast(tf.random.normal([batch, size, size, channels]), dtype)
    w = tf.cast(tf.random.normal([3, 3, channels, channels]), dtype)
    conv = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
    flops = 2 * batch * size * size * channels * 9 * channels
    return flops / best_seconds(lambda: float(tf.cast(conv()[0, 0, 0, 0], tf.float32)), seconds) / 1e9


def best_seconds(fn, seconds: float) -> float:
    """Shortest wall time of fn() (which must wait for its result) over `seconds` of repeats,
    after 3 untimed calls."""
    for _ in range(3):
        fn()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run_bench(name: str, iters: int, warmup: int, batch: int = 0, jit: bool = False,
              mixed_precision: bool = False, split: bool = True, fused_from: int = -1,
              count_flops: bool = True) -> dict:
    import keras
    import tensorflow as tf

    from alae_tf.models.alae import ALAE, ALAEConfig

    arch = dict(CONFIGS[name])
    global_batch = batch or arch.pop("batch")
    arch.pop("batch", None)
    if fused_from >= 0:
        arch["fused_from"] = fused_from
    from alae_tf import precision

    policy = precision.mixed_policy() if mixed_precision else "float32"
    keras.mixed_precision.set_dtype_policy(policy)
    strategy = tf.distribute.get_strategy()
    model = ALAE(ALAEConfig(model="alae_style", jit=jit, **arch,
                            mixed_precision=precision.loss_scaling(policy)))
    lod = model.config.top_lod
    res, ch = arch["resolution"], arch["channels"]
    reals = tf.random.uniform([global_batch, res, res, ch], -1.0, 1.0)
    alpha = tf.constant(1.0)

    def compiled(body):
        @tf.function
        def fn():
            out = strategy.run(body)
            model.after_step(global_batch)
            return out
        return fn

    kw = dict(lod=lod, global_batch=global_batch)
    full = compiled(lambda: model.replica_step(reals, alpha, **kw))
    result = {"config": name, "batch": global_batch, "resolution": res, "jit": jit,
              "policy": policy, "fused_from": model.config.fused_from}
    seconds = _time(full, iters, warmup)
    result["images_per_second"] = round(global_batch / seconds, 2)
    result["seconds_per_iteration"] = round(seconds, 4)
    if count_flops:
        gflop = conv_flops(full.get_concrete_function().graph) / 1e9
        rate = machine_conv_rate(keras.mixed_precision.global_policy().compute_dtype)
        result["conv_gflop_per_iteration"] = _figure(gflop)
        result["conv_gflops_achieved"] = _figure(gflop / seconds)
        result["conv_gflops_machine"] = _figure(rate)
        # if the iteration were nothing but convolutions at the rate they reach alone
        result["images_per_second_conv_bound"] = _figure(global_batch * rate / gflop)
    if split:
        steps = {"d_step": lambda: model.d_step(reals, alpha, **kw),
                 "g_step": lambda: model.g_step(alpha, **kw),
                 "lae_step": lambda: model.lae_step(alpha, **kw)}
        result["step_seconds"] = {k: round(_time(compiled(f), iters, warmup), 4) for k, f in steps.items()}
    gpus = tf.config.list_physical_devices("GPU")
    result["device"] = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
                        if gpus else f"CPU x{os.cpu_count()} ({platform.processor() or platform.machine()})")
    result["tensorflow"] = tf.__version__
    return result


def _define_flags():
    """The command's flags (defined only when run as a command, so importing this module next
    to alae_tf.train defines nothing twice)."""
    flags.DEFINE_enum("config", "mnist32", ["mnist32", "celeba64", "ffhq256", "ffhq1024"], "Architecture.")
    flags.DEFINE_integer("iters", 20, "Timed iterations.")
    flags.DEFINE_integer("warmup", 3, "Untimed iterations first (tracing, autotuning).")
    flags.DEFINE_integer("batch", 0, "Global batch; 0: the config's.")
    flags.DEFINE_boolean("jit", False, "XLA-compile the gradient computations.")
    flags.DEFINE_boolean("mixed_precision", False, "float16 on a GPU, bfloat16 on a CPU with AVX512-BF16 / AMX "
                         "(as train.py's --mixed_precision).")
    flags.DEFINE_integer("fused_from", -1, "Fuse up/down convs from this resolution; -1: the model default.")
    flags.DEFINE_boolean("split", True, "Also time the D, G and latent AE steps alone.")
    flags.DEFINE_boolean("flops", True, "Also count the iteration's convolution FLOPs and time this "
                         "machine's convolutions alone (the ceiling those FLOPs allow).")


def main(argv):
    del argv
    result = run_bench(FLAGS.config, FLAGS.iters, FLAGS.warmup, FLAGS.batch, FLAGS.jit,
                       FLAGS.mixed_precision, FLAGS.split, FLAGS.fused_from, FLAGS.flops)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    _define_flags()
    app.run(main)
