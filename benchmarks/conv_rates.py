"""GFLOP/s of lone float32 3x3 convolutions at the shapes of the speed configs, in TensorFlow
and (when it is installed; it is not a dependency) PyTorch, the authors' release's framework:
what this machine can give either of them. Also a float32 4096^3 matrix product in TensorFlow.

    python benchmarks/conv_rates.py [--seconds 2]
"""
from __future__ import annotations

import argparse
import os

from alae_tf.bench import best_seconds, machine_conv_rate

SHAPES = [  # batch, side, channels in = out: the 64 / 32 / 16 px blocks of celeba64
    (32, 64, 64), (32, 32, 128), (32, 16, 256), (64, 32, 64),  # the last: mnist32's top block
]


def tf_rates(seconds: float) -> dict:
    import tensorflow as tf

    out = {(n, side, c): machine_conv_rate("float32", n, side, c, seconds) for n, side, c in SHAPES}
    a = tf.random.normal([4096, 4096])
    mm = tf.function(lambda: tf.linalg.matmul(a, a))
    out["matmul"] = 2 * 4096 ** 3 / best_seconds(lambda: mm()[0, 0].numpy(), seconds) / 1e9
    return out


def torch_rates(seconds: float) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_grad_enabled(False)
    out = {}
    for n, side, c in SHAPES:
        x = torch.randn(n, c, side, side)
        w = torch.randn(c, c, 3, 3)
        out[(n, side, c)] = 2 * n * side * side * c * 9 * c / best_seconds(
            lambda: torch.nn.functional.conv2d(x, w, padding=1), seconds) / 1e9
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf_r = tf_rates(args.seconds)
    torch_r = torch_rates(args.seconds)
    print(f"float32, best of repeats over {args.seconds} s, {os.cpu_count()} CPU cores")
    print("| batch x side x side x channels | TensorFlow GFLOP/s | PyTorch GFLOP/s |")
    print("|---|---|---|")
    for key in SHAPES:
        n, side, c = key
        other = f"{torch_r[key]:.0f}" if torch_r else "not installed"
        print(f"| {n} x {side} x {side} x {c}, 3x3 conv | {tf_r[key]:.0f} | {other} |")
    print(f"| 4096^3 matmul | {tf_r['matmul']:.0f} | |")


if __name__ == "__main__":
    main()
