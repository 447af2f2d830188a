"""Perceptual path length (Karras et al. 2019, StyleGAN) in W (lerp) and Z (slerp).

For each sample: latents a, b ~ N(0, I), t ~ U(0, 1) ('full') or t = 0 ('end'); the images at
t and t + eps (eps = 1e-4) along the path, face-cropped when asked, box-downsampled to 256 when
larger; distance LPIPS / eps^2. The metric is the mean of the distances between their 1st and
99th percentiles.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from alae_tf.metrics.lpips import downsample_to

EPSILON = 1e-4
SPACES = ("w", "z")
SAMPLINGS = ("full", "end")
METRICS = {f"ppl_{s}{m}": (s, m) for s in SPACES for m in SAMPLINGS}  # ppl_wfull, ...


def lerp(a, b, t):
    return a + (b - a) * t


def slerp(a, b, t):
    """Spherical interpolation of the directions of a and b; the result lies on the sphere of
    radius sqrt(D), where D-dimensional standard normal latents concentrate."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    d = np.clip(np.sum(a * b, axis=-1, keepdims=True), -1.0, 1.0)
    p = t * np.arccos(d)
    c = b - d * a
    c = c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)
    out = a * np.cos(p) + c * np.sin(p)
    out = out / np.linalg.norm(out, axis=-1, keepdims=True)
    return out * np.sqrt(a.shape[-1])


def face_crop(images: np.ndarray) -> np.ndarray:
    """StyleGAN's face crop of NHWC images: rows [3c, 7c), columns [2c, 6c), c = H / 8."""
    c = images.shape[1] // 8
    return images[:, 3 * c:7 * c, 2 * c:6 * c]


def filtered_mean(distances) -> float:
    """Mean of the distances between their 1st and 99th percentiles (inclusive)."""
    d = np.asarray(distances, np.float64)
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())


def path_distances(space: str, sampling: str, num: int, latent_size: int, lpips,
                   generate: Callable | None = None, mapping: Callable | None = None,
                   decode: Callable | None = None, crop: bool = False, batch_size: int = 32,
                   seed: int = 0, epsilon: float = EPSILON) -> np.ndarray:
    """(num,) LPIPS(img(t), img(t + eps)) / eps^2 along random paths.

    space 'w': lerp between mapping(a) and mapping(b), images decode(w);
    space 'z': slerp between a and b, images generate(z). Callables take and return numpy
    (images NHWC float [-1, 1])."""
    if space not in SPACES or sampling not in SAMPLINGS:
        raise ValueError(f"unknown path length variant {space!r}/{sampling!r}")
    rng = np.random.RandomState(seed)
    out = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        a = rng.standard_normal((n, latent_size))  # float64: the paths are computed in float64
        b = rng.standard_normal((n, latent_size))
        t = rng.uniform(size=(n, 1)) if sampling == "full" else np.zeros((n, 1))
        if space == "w":
            wa = np.asarray(mapping(a.astype(np.float32)), np.float64)
            wb = np.asarray(mapping(b.astype(np.float32)), np.float64)
            lat = np.concatenate([lerp(wa, wb, t), lerp(wa, wb, t + epsilon)]).astype(np.float32)
            images = np.asarray(decode(lat), np.float32)
        else:
            lat = np.concatenate([slerp(a, b, t), slerp(a, b, t + epsilon)]).astype(np.float32)
            images = np.asarray(generate(lat), np.float32)
        if crop:
            images = face_crop(images)
        images = downsample_to(images, 256)
        out.append(lpips(images[:n], images[n:]) / epsilon ** 2)
    return np.concatenate(out)
