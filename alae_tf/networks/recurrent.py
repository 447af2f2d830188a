"""Recurrent encoder and decoder of the recurrent autoencoder (``rae``), for any sequences.

``SequenceEncoder``: (batch, time, features) -> (batch, code_size): a sequence-to-vector RNN
(LSTM or GRU, ``units``) reads the steps in order; its last output goes through a Dense layer to
the code. ``SequenceDecoder``: (batch, latent_size) -> (batch, time_steps, features): the code is
repeated over ``time_steps`` steps, a vector-to-sequence RNN of the same kind runs over them
(one output per step) and a Dense layer shared by the steps writes each step's ``features``
(linear). Neither knows about images; any float sequences of a fixed length train with them
(docs/training.md, "The recurrent autoencoder on other sequences").

``RowEncoder`` / ``RowDecoder`` are the same networks on NHWC images read as sequences of rows:
time = the image's height, features = width x channels.
"""
from __future__ import annotations

import keras
import tensorflow as tf

CELLS = ("lstm", "gru")


def _rnn(cell: str, units: int, return_sequences: bool, name: str) -> keras.layers.Layer:
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    kind = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
    return kind(units, return_sequences=return_sequences, name=name)


@keras.saving.register_keras_serializable(package="alae_tf")
class SequenceEncoder(keras.layers.Layer):
    """(batch, time, ``features``) -> RNN (``cell``, ``units``), last output -> Dense ``code_size``.

    The time length is free (the same weights read any length)."""

    def __init__(self, features: int, units: int, code_size: int, cell: str = "lstm", **kwargs):
        super().__init__(**kwargs)
        if min(features, units, code_size) < 1:
            raise ValueError(f"features, units and code_size must be positive, got {features}, {units}, {code_size}")
        self.features, self.units, self.code_size, self.cell = int(features), int(units), int(code_size), cell
        self.rnn = _rnn(cell, self.units, return_sequences=False, name=cell)
        self.code = keras.layers.Dense(self.code_size, name="code")

    def build(self, input_shape):
        self.rnn.build((None, None, self.features))
        self.code.build((None, self.units))
        self.built = True

    def call(self, sequences):
        return self.code(self.rnn(sequences))

    def get_config(self):
        return {**super().get_config(), "features": self.features, "units": self.units,
                "code_size": self.code_size, "cell": self.cell}


@keras.saving.register_keras_serializable(package="alae_tf")
class SequenceDecoder(keras.layers.Layer):
    """(batch, ``latent_size``) -> repeated ``time_steps`` times -> RNN (``cell``, ``units``, every
    step's output) -> Dense ``features`` per step (linear): (batch, time_steps, features)."""

    def __init__(self, time_steps: int, features: int, units: int, latent_size: int, cell: str = "lstm",
                 **kwargs):
        super().__init__(**kwargs)
        if min(time_steps, features, units, latent_size) < 1:
            raise ValueError(f"time_steps, features, units and latent_size must be positive, got "
                             f"{time_steps}, {features}, {units}, {latent_size}")
        self.time_steps, self.features = int(time_steps), int(features)
        self.units, self.latent_size, self.cell = int(units), int(latent_size), cell
        self.rnn = _rnn(cell, self.units, return_sequences=True, name=cell)
        self.out = keras.layers.Dense(self.features, name="out")

    def build(self, input_shape):
        self.rnn.build((None, self.time_steps, self.latent_size))
        self.out.build((None, self.time_steps, self.units))
        self.built = True

    def call(self, codes):
        repeated = tf.repeat(codes[:, None, :], self.time_steps, axis=1)
        return self.out(self.rnn(repeated))

    def get_config(self):
        return {**super().get_config(), "time_steps": self.time_steps, "features": self.features,
                "units": self.units, "latent_size": self.latent_size, "cell": self.cell}


@keras.saving.register_keras_serializable(package="alae_tf")
class RowEncoder(SequenceEncoder):
    """NHWC images -> sequences of ``resolution`` rows of ``resolution * channels`` values -> code."""

    def __init__(self, resolution: int, channels: int, units: int, code_size: int, cell: str = "lstm",
                 **kwargs):
        super().__init__(resolution * channels, units, code_size, cell, **kwargs)
        self.resolution, self.channels = int(resolution), int(channels)

    def call(self, images):
        return super().call(tf.reshape(images, [-1, self.resolution, self.resolution * self.channels]))

    def get_config(self):
        config = super().get_config()
        config.pop("features")
        return {**config, "resolution": self.resolution, "channels": self.channels}


@keras.saving.register_keras_serializable(package="alae_tf")
class RowDecoder(SequenceDecoder):
    """Code -> ``resolution`` rows of ``resolution * channels`` values -> NHWC images."""

    def __init__(self, resolution: int, channels: int, units: int, latent_size: int, cell: str = "lstm",
                 **kwargs):
        super().__init__(resolution, resolution * channels, units, latent_size, cell, **kwargs)
        self.resolution, self.channels = int(resolution), int(channels)

    def call(self, codes):
        return tf.reshape(super().call(codes), [-1, self.resolution, self.resolution, self.channels])

    def get_config(self):
        config = super().get_config()
        config.pop("features")
        config.pop("time_steps")
        return {**config, "resolution": self.resolution, "channels": self.channels}
