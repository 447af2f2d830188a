"""Offline fixtures for the data tests: synthetic images written with PIL, and StyleGAN- /
release-layout datasets written with plain tf.train.Example (independent of our writer)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference_pyramid(top_hwc: np.ndarray) -> list[np.ndarray]:
    """CHW uint8 levels, top first, computed in float64 from the unrounded level above."""
    x = top_hwc.astype(np.float64)
    levels = [top_hwc.transpose(2, 0, 1)]
    while x.shape[0] > 4:
        h, w, c = x.shape
        x = x.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))
        levels.append(np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(2, 0, 1))
    return levels


def smooth_images(n: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
    """n distinct, smooth-ish uint8 images (N, size, size, channels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    out = np.empty((n, size, size, channels), np.uint8)
    for i in range(n):
        for c in range(channels):
            a, b, ph = rng.uniform(0.5, 4, 3)
            v = 127.5 + 100 * np.sin(a * 3 * xx + ph) * np.cos(b * 3 * yy) + rng.normal(0, 12,
                                                                                     xx.shape)
            out[i, :, :, c] = np.clip(v, 0, 255).astype(np.uint8)
    return out


def write_png_tree(root, images, ext=".png", classes=None):
    """images (N,H,W,C) -> root/[class/]img_00000.ext; returns the paths."""
    from PIL import Image

    paths = []
    for i, img in enumerate(images):
        d = root if classes is None else os.path.join(root, classes[i])
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"img_{i:05d}{ext}")
        arr = img[:, :, 0] if img.shape[2] == 1 else img
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def _example(chw: np.ndarray, label=None, key_order=("shape", "data", "label")):
    import tensorflow as tf

    feats = {
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(chw.shape))),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[chw.tobytes()])),
    }
    if label is not None:
        feats["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
    ordered = {k: feats[k] for k in key_order if k in feats}
    return tf.train.Example(features=tf.train.Features(feature=ordered)).SerializeToString()


def write_fixture(directory, name, images, labels=None, parts=None, key_order=None):
    """A multi-LOD dataset written with tf.io.TFRecordWriter and tf.train.Example only.
    parts None: StyleGAN layout NAME-rXX.tfrecords; else the release layout with `parts`
    files NAME-rXX.tfrecords.NNN (record i in part i * parts // N). No manifest."""
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    n = len(images)
    pyramids = [reference_pyramid(img) for img in images]
    top = int(np.log2(images.shape[1]))
    levels = list(range(top, 1, -1))
    for li, r in enumerate(levels):
        writers = {}
        for i in range(n):
            part = None if parts is None else i * parts // n
            if part not in writers:
                fn = f"{name}-r{r:02d}.tfrecords" + ("" if part is None else f".{part:03d}")
                writers[part] = tf.io.TFRecordWriter(os.path.join(directory, fn))
            lab = None if labels is None else labels[i]
            writers[part].write(_example(pyramids[i][li], lab,
                                         key_order or ("shape", "data", "label")))
        for w in writers.values():
            w.close()
    return pyramids


def flagfile_values(path) -> dict:
    """{flag: value} of a flagfile's lines: "--name=value" -> "value", "--name" -> True, "--noname" -> False."""
    values = {}
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("--no") and "=" not in line:
                values[line[4:]] = False
            elif line.startswith("--"):
                key, eq, value = line[2:].partition("=")
                values[key] = value if eq else True
    return values


def run_cli(module, *args, timeout=300):
    """python -m module args... from the repository root; returns CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_line(proc) -> str:
    """The 'error: ...' line a CLI printed to stderr."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert lines, f"no 'error:' line in stderr:\n{proc.stderr[-2000:]}"
    return lines[-1]
