"""Latent probes (the BiGAN / ALAE MNIST protocol): how linearly / locally separable the classes
are in a representation. Classifiers are fitted on the training split and scored on the
held-out split; the same classifiers on raw pixels of the same images are the baseline.

- 1nn: one nearest neighbour, Euclidean distance;
- svm: linear SVM (sklearn LinearSVC, primal, C = 0.01) on features centred by the training
  split's mean and divided by its overall standard deviation (one scalar: the geometry is kept,
  and constant pixels do not blow up as they would under per-feature scaling).
"""
from __future__ import annotations

import warnings

import numpy as np

CLASSIFIERS = ("1nn", "svm")
SVM_C = 0.01
SVM_MAX_ITER = 2000


def _flat(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x.reshape(len(x), -1)


def accuracies(train_x, train_y, test_x, test_y, seed: int = 0) -> dict[str, float]:
    """{'1nn': accuracy, 'svm': accuracy} on the test split of classifiers fitted on train."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC

    train_x, test_x = _flat(train_x), _flat(test_x)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("latent probe: features and labels differ in count")
    if len(np.unique(train_y)) < 2:
        raise ValueError("latent probe: the training split needs at least two classes")
    knn = KNeighborsClassifier(n_neighbors=1).fit(train_x, train_y)
    mean = train_x.mean(axis=0)
    scale = max(float(np.std(train_x - mean)), 1e-12)
    svm = LinearSVC(C=SVM_C, dual=False, max_iter=SVM_MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit((train_x - mean) / scale, train_y)
    return {"1nn": float(np.mean(knn.predict(test_x) == test_y)),
            "svm": float(np.mean(svm.predict((test_x - mean) / scale) == test_y))}


def latent_probe(train_codes, train_images, train_labels, test_codes, test_images, test_labels,
                 seed: int = 0) -> dict[str, float]:
    """``latent_probe/{codes,pixels}/{1nn,svm}`` accuracies on the held-out split."""
    out = {}
    for rep, (tr, te) in {"codes": (train_codes, test_codes),
                          "pixels": (train_images, test_images)}.items():
        for clf, acc in accuracies(tr, train_labels, te, test_labels, seed).items():
            out[f"latent_probe/{rep}/{clf}"] = acc
    return out
