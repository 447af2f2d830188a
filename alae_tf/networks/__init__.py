"""Networks of ALAE and the baselines, and what they share: checkpointing by weight name and
synchronized batch norm."""
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


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    """Batch norm whose statistics are over the global batch under a distribution strategy."""
    return keras.layers.BatchNormalization(synchronized=True, name=name)


def channels_at(lod: int, layer_count: int, start_channels: int, max_channels: int) -> int:
    """Feature maps at LOD ``lod`` of a progressive network: doubling from the top resolution down, capped."""
    return min(max_channels, start_channels * 2 ** (layer_count - 1 - lod))
