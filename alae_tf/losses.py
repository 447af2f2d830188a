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


def gaussian_kl(mean, log_variance):
    """KL(N(mean, exp(log_variance)) || N(0, I)) per example, closed form (Kingma & Welling 2014):
    -1/2 * sum over the latent axis of (1 + log_variance - mean^2 - exp(log_variance))."""
    return -0.5 * tf.reduce_sum(1.0 + log_variance - tf.square(mean) - tf.exp(log_variance), axis=-1)


def l1_sparsity(codes):
    """L1 sparsity penalty per example: sum over the code axis of |h| (Goodfellow et al. eq. 14.7)."""
    return tf.reduce_sum(tf.abs(codes), axis=-1)


def kl_sparsity(target: float, mean_activation):
    """Sum over units of KL(Bernoulli(target) || Bernoulli(mean_activation)), the mean activations
    in (0, 1) (clipped to [1e-6, 1 - 1e-6] for finite logs)."""
    rho_hat = tf.clip_by_value(mean_activation, 1e-6, 1.0 - 1e-6)
    return tf.reduce_sum(target * tf.math.log(target / rho_hat)
                         + (1.0 - target) * tf.math.log((1.0 - target) / (1.0 - rho_hat)), axis=-1)


def feature_reconstruction(features, target):
    """Gaussian (identity covariance) negative log-likelihood of ``target`` features given the
    reconstruction's, up to a constant: 1/2 * sum over the non-batch axes of the squared error
    (VAE-GAN's learned similarity, Larsen et al. 2016 eq. 6). ``target`` gets no gradient."""
    error = tf.square(features - tf.stop_gradient(target))
    return 0.5 * tf.reduce_sum(tf.reshape(error, [tf.shape(error)[0], -1]), axis=-1)


def equilibrium_gates(real_bce, fake_bce, equilibrium: float = 0.68, margin: float = 0.35):
    """VAE-GAN's balancing from the discriminator's mean BCE on reals and on generated images:
    (train_discriminator, train_decoder_gan) booleans. Either BCE below equilibrium - margin: D is
    too good, stop training it; either above equilibrium + margin: D is too bad, stop the decoder's
    GAN term; both stopped: train both."""
    too_good = tf.logical_or(real_bce < equilibrium - margin, fake_bce < equilibrium - margin)
    too_bad = tf.logical_or(real_bce > equilibrium + margin, fake_bce > equilibrium + margin)
    both = tf.logical_and(too_good, too_bad)
    return tf.logical_or(tf.logical_not(too_good), both), tf.logical_or(tf.logical_not(too_bad), both)
