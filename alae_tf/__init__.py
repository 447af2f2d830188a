"""alae_tf: Adversarial Latent Autoencoders (ALAE / StyleALAE) in TensorFlow 2 / Keras 3."""

from tfrecords_tools import __version__  # noqa: F401  the one version, in the lowest layer
