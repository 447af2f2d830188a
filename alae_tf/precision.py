"""Which mixed-precision policy this machine supports (``--mixed_precision``).

With a GPU: ``mixed_float16``, with dynamic loss scaling in the models. Without one, on a CPU
with bfloat16 instructions (x86 AVX512-BF16 or AMX-BF16, read from /proc/cpuinfo):
``mixed_bfloat16``, where oneDNN runs convolutions and matrix products in bfloat16; bfloat16
has float32's exponent range, so no loss scaling. On other CPUs, float32 with a warning, so a
config that asks for mixed precision runs on any machine. Variables, losses and R1 stay float32
either way, so checkpoints are the same whichever policy wrote them.
"""
from __future__ import annotations

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU lists bfloat16 instructions (False where /proc/cpuinfo is absent)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in _BF16_FLAGS)
    except OSError:
        pass
    return False


def mixed_policy(has_gpu: bool | None = None, has_bf16: bool | None = None) -> str:
    """'mixed_float16' with a GPU, else 'mixed_bfloat16' on a CPU with bfloat16 instructions,
    else 'float32' (emulated reduced precision would be slower than float32; callers say so)."""
    if has_gpu is None:
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if has_gpu:
        return "mixed_float16"
    if cpu_has_bf16() if has_bf16 is None else has_bf16:
        return "mixed_bfloat16"
    return "float32"


def loss_scaling(policy: str) -> bool:
    """Whether a policy needs loss scaling (float16's narrow exponent range)."""
    return policy == "mixed_float16"
