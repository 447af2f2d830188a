"""Networks of ALAE: mapping F and discriminator head D, style G and E, MLP G and E."""
from __future__ import annotations

import keras
import tensorflow as tf


class WeightsTrackable(tf.Module):
    """A layer's weights by name, for tf.train.Checkpoint.

    tf.train.Checkpoint does not follow Keras 3 layers into their weights; this names each
    weight by its path inside the layer, so a checkpoint restores into any layer of the same
    architecture whatever its name.
    """

    def __init__(self, layer: keras.layers.Layer):
        super().__init__(name=None)
        prefix = layer.name + "/"
        self.weights_by_name = {
            (w.path[len(prefix):] if w.path.startswith(prefix) else w.path).replace("/", "."): w
            for w in layer.weights
        }
