"""Domain metrics: a small CNN trained on a labelled dataset's own labels, used offline instead of
Inception. Its penultimate layer (128 features) gives a domain FID of samples and of
reconstructions; its predictions give the label-preservation rate of reconstructions and the
class histogram of samples.

These numbers depend on this classifier: they are NOT comparable with Inception FIDs (nor
across classifiers); compare runs only under the same classifier file.

The classifier is a Keras model saved as a .keras file (default ``<data_dir>.classifier.keras``
next to the dataset); its input is NHWC float [-1, 1] at the dataset's resolution.
"""
from __future__ import annotations

import os

import numpy as np

FEATURE_LAYER = "features"
FEATURES = 128
NOT_COMPARABLE = ("domain metrics use the features of the dataset's own classifier: they are "
                  "not comparable with Inception FIDs")


def default_path(data_dir: str) -> str:
    return os.path.abspath(data_dir) + ".classifier.keras"


def build_classifier(resolution: int, channels: int, num_classes: int):
    """conv-conv-pool blocks (32, 64, 128 maps) down to 8 x 8, dense 128 ('features'), softmax."""
    import keras

    inputs = keras.Input((resolution, resolution, channels), name="images")
    x, size, block = inputs, resolution, 0
    while size > 8 or block == 0:
        maps = min(32 * 2 ** block, 128)
        x = keras.layers.Conv2D(maps, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(maps, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
        size, block = size // 2, block + 1
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Dense(FEATURES, activation="relu", name=FEATURE_LAYER)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="domain_classifier")


class DomainClassifier:
    """A trained classifier: features (N, 128) and predicted classes of NHWC float images."""

    def __init__(self, model, tag: str = "model", batch_size: int = 256):
        import keras

        self.model = model
        _, self.resolution, _, self.channels = model.input_shape
        self.num_classes = int(model.output_shape[-1])
        self.both = keras.Model(model.input, [model.get_layer(FEATURE_LAYER).output, model.output])
        self.tag = tag
        self.batch_size = batch_size

    def _run(self, images):
        images = np.asarray(images, np.float32)
        if images.shape[1:] != (self.resolution, self.resolution, self.channels):
            raise ValueError(f"the domain classifier takes {self.resolution}x{self.resolution}x"
                             f"{self.channels} images, got {'x'.join(map(str, images.shape[1:]))}")
        feats, probs = [], []
        for i in range(0, len(images), self.batch_size):
            f, p = self.both(images[i:i + self.batch_size], training=False)
            feats.append(np.asarray(f))
            probs.append(np.asarray(p))
        return np.concatenate(feats), np.concatenate(probs)

    def features(self, images) -> np.ndarray:
        return self._run(images)[0]

    def predict(self, images) -> np.ndarray:
        return np.argmax(self._run(images)[1], axis=1)

    def feature_net(self):
        from alae_tf.metrics.fid import FeatureNet

        return FeatureNet("domain", self.tag, self.features, self.batch_size)


def train_classifier(train_x, train_y, test_x, test_y, epochs: int = 3, batch_size: int = 64,
                     seed: int = 0):
    """(DomainClassifier, test accuracy) of a classifier fitted on the training split."""
    import keras

    train_x = np.asarray(train_x, np.float32)
    train_y, test_y = np.asarray(train_y, np.int64), np.asarray(test_y, np.int64)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    keras.utils.set_random_seed(seed)
    model = build_classifier(train_x.shape[1], train_x.shape[3], num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    clf = DomainClassifier(model)
    return clf, float(np.mean(clf.predict(test_x) == test_y))


def save_classifier(clf: DomainClassifier, path: str):
    """Writes the .keras file atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.keras"
    clf.model.save(tmp)
    os.replace(tmp, path)


def load_classifier(path: str) -> DomainClassifier:
    import keras

    from alae_tf.metrics.fid import file_tag

    if not os.path.isfile(path):
        raise ValueError(f"no domain classifier at {path}: train one with "
                         f"python -m alae_tf.evaluate --train_classifier --data_dir=DATA "
                         f"[--classifier=PATH]")
    try:
        model = keras.saving.load_model(path, compile=False)
        return DomainClassifier(model, tag=file_tag(path))
    except Exception as e:  # Keras raises many kinds for a file that is not a .keras model
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"--classifier={path}: not a domain classifier ({first})") from None


def label_preservation(clf: DomainClassifier, reconstructions, labels) -> float:
    """Fraction of reconstructions that the classifier assigns their original's label."""
    return float(np.mean(clf.predict(reconstructions) == np.asarray(labels)))


def class_histogram(clf: DomainClassifier, samples) -> list[float]:
    """Fraction of samples per predicted class (num_classes values summing to 1)."""
    counts = np.bincount(clf.predict(samples), minlength=clf.num_classes)
    return (counts / max(1, counts.sum())).tolist()
