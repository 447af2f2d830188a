"""Per-example losses of ALAE; the training step averages them over the global batch."""
from __future__ import annotations

import tensorflow as tf


def discriminator_logistic(real_logits, fake_logits):
    """Non-saturating D loss: softplus(D(fake)) + softplus(-D(real))."""
    return tf.nn.softplus(fake_logits) + tf.nn.softplus(-real_logits)


def generator_nonsaturating(fake_logits):
    """Non-saturating G loss: softplus(-D(fake))."""
    return tf.nn.softplus(-fake_logits)


def r1_penalty(real_grads, gamma: float):
    """R1 = gamma / 2 * sum over (H, W, C) of the squared gradient of D(E(real)) w.r.t. real."""
    return 0.5 * gamma * tf.reduce_sum(tf.square(real_grads), axis=[1, 2, 3])


def latent_reconstruction(reconstructed, target):
    """Elementwise mean squared error over the latent axis (not a summed L2)."""
    return tf.reduce_mean(tf.square(reconstructed - tf.stop_gradient(target)), axis=-1)
