"""Improved precision and recall (Kynkäänniemi et al. 2019) in any feature space.

Each set's manifold is the union of balls around its points, each ball's radius the distance to
the point's k-th nearest neighbour in its own set (k = 3). Precision: the fraction of generated
points inside the real manifold; recall: the fraction of real points inside the generated one.
"""
from __future__ import annotations

import numpy as np

K = 3
CHUNK = 1024


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)) in float64."""
    d = (np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T))
    return np.maximum(d, 0.0)


def knn_radii(x, k: int = K) -> np.ndarray:
    """Squared distance from each point to its k-th nearest other point of the same set."""
    x = np.asarray(x, np.float64)
    if len(x) <= k:
        raise ValueError(f"precision/recall needs more than k={k} points per set, got {len(x)}")
    out = np.empty(len(x))
    for i in range(0, len(x), CHUNK):
        d = _sq_distances(x[i:i + CHUNK], x)
        out[i:i + CHUNK] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
    return out


def coverage(manifold, radii, queries) -> float:
    """Fraction of ``queries`` within a ball (centre in ``manifold``, squared radius ``radii``)."""
    manifold = np.asarray(manifold, np.float64)
    queries = np.asarray(queries, np.float64)
    inside = 0
    for i in range(0, len(queries), CHUNK):
        d = _sq_distances(queries[i:i + CHUNK], manifold)
        inside += int(np.sum(np.any(d <= radii[None, :], axis=1)))
    return inside / len(queries)


def precision_recall(real, fake, k: int = K) -> dict[str, float]:
    """{'precision': ..., 'recall': ...} of (N, D) generated features against real ones."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision/recall needs two (N, D) feature sets, got {real.shape} "
                         f"and {fake.shape}")
    return {"precision": coverage(real, knn_radii(real, k), fake),
            "recall": coverage(fake, knn_radii(fake, k), real)}
