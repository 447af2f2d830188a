"""Fréchet Inception Distance (Heusel et al. 2017): feature networks, the distance, cached reals.

    net = inception_network("inception_v3_notop.h5")     # or None: Keras' download ("imagenet")
    fake = net(images)                                    # NHWC float [-1, 1] -> (N, 2048)
    fid = fid_of_features(real, fake)

A feature network (`FeatureNet`) maps NHWC float images in [-1, 1] (any size, 1 or 3 channels)
to an (N, D) float32 array; its `tag` identifies its weights in cache file names.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from typing import Callable

import numpy as np
import scipy.linalg

INCEPTION_SIZE = 299
INCEPTION_HELP = ("pass --inception_weights=PATH, a Keras InceptionV3 weights file without the "
                  "classifier top (see docs/metrics.md)")


@dataclasses.dataclass
class FeatureNet:
    """A feature extractor: ``fn`` maps one batch of NHWC float [-1, 1] images to (N, D)."""

    name: str
    tag: str
    fn: Callable
    batch_size: int = 64

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images, np.float32)
        out = [np.asarray(self.fn(images[i:i + self.batch_size]), np.float32)
               for i in range(0, len(images), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def file_tag(path: str) -> str:
    """Short content hash of a weights file (names cache entries of that network)."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def to_rgb(x):
    """NHWC tensor with 1 or 3 channels -> 3 channels (grey replicated)."""
    import tensorflow as tf

    return tf.tile(x, [1, 1, 1, 3]) if x.shape[-1] == 1 else x


def inception_network(weights: str | None = None, batch_size: int = 32) -> FeatureNet:
    """InceptionV3 (keras.applications, no top, average pool: 2048 features) at 299 x 299.

    ``weights``: a local weights file; None asks Keras for its "imagenet" weights, which it
    downloads once into ~/.keras/models (offline without a cached copy: ValueError)."""
    import keras
    import tensorflow as tf

    if weights is not None and not os.path.isfile(weights):
        raise ValueError(f"--inception_weights={weights}: no such file")
    try:
        net = keras.applications.InceptionV3(include_top=False, pooling="avg",
                                             weights=weights or "imagenet",
                                             input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
    except Exception as e:  # Keras raises a bare Exception when the download fails
        if weights:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"--inception_weights={weights}: cannot load it into InceptionV3 "
                             f"without top ({first})") from None
        raise ValueError(f"cannot download the Inception-v3 weights (offline?): "
                         f"{INCEPTION_HELP}") from None

    @tf.function(reduce_retracing=True)
    def features(x):
        x = tf.image.resize(to_rgb(tf.convert_to_tensor(x, tf.float32)),
                            [INCEPTION_SIZE, INCEPTION_SIZE], method="bilinear")
        return net(tf.clip_by_value(x, -1.0, 1.0), training=False)  # InceptionV3 takes [-1, 1]

    tag = "imagenet" if weights is None else file_tag(weights)
    return FeatureNet("inception", tag, lambda x: features(x).numpy(), batch_size)


# ----------------------------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------------------------

def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of (N, D) features in float64 (covariance with N - 1)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors, got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64.

    When the product's square root is not finite (a singular product), ``eps`` is added to
    both diagonals and it is recomputed; a complex result whose imaginary part is numerical
    noise (|imag| <= 1e-3 on the diagonal) keeps its real part, otherwise ValueError."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: means {mu1.shape} {mu2.shape}, "
                         f"covariances {s1.shape} {s2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # a singular product is handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(s1)) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"the covariance product has a complex square root "
                             f"(max |imag| {np.max(np.abs(covmean.imag)):.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid_of_features(real, fake) -> float:
    """Fréchet distance between the Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*statistics(real), *statistics(fake))


# ----------------------------------------------------------------------------------------------
# Cached features of real images
# ----------------------------------------------------------------------------------------------

def cache_path(data_dir: str, resolution: int, net: FeatureNet, count: int) -> str:
    """``<data_dir>.<net>-<tag>-r<resolution>-n<count>.npz``: next to the dataset."""
    return f"{os.path.abspath(data_dir)}.{net.name}-{net.tag}-r{resolution}-n{count}.npz"


def cached_features(data_dir: str, resolution: int, net: FeatureNet, count: int,
                    images: Callable[[], np.ndarray], log=print) -> np.ndarray:
    """Features of the first ``count`` images of a dataset at ``resolution``, computed once
    (``images()`` gives them) and cached next to the dataset (skipped if it is read-only)."""
    path = cache_path(data_dir, resolution, net, count)
    if os.path.exists(path):
        try:
            with np.load(path) as f:
                feats = f["features"]
            if len(feats) == count:
                return feats
        except (OSError, ValueError, KeyError):
            pass
        log(f"ignoring unreadable cache {path}")
    feats = net(images())
    try:
        tmp = path + ".tmp.npz"
        np.savez(tmp, features=feats)
        os.replace(tmp, path)
        log(f"cached real {net.name} features: {path}")
    except OSError as e:
        log(f"cannot cache real features at {path} ({e.strerror})")
    return feats
