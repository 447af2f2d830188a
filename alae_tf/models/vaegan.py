"""VAE-GAN (Larsen et al. 2016).

One iteration, one forward pass (Alg. 1 of the paper):
  z = mu(x) + exp(log_var(x) / 2) * eps,   x~ = Dec(z),   x_p = Dec(z_p), z_p ~ N(0, I)
  Dis on [x, x~, x_p] together (one batch-norm batch, so a perfect reconstruction has exactly the
  reals' features); f = Dis's feature layer (the last conv, before its batch norm).
  L_prior = KL(q(z|x) || N(0, I))                               (closed form)
  L_llike = 1/2 ||f(x~) - f(x)||^2                               (Gaussian in feature space)
  L_dis   = BCE(D(x), 1) + [BCE(D(x~), 0) + BCE(D(x_p), 0)] / 2   (real vs generated, balanced)
  L_gan   = BCE(D(x~), 1) + BCE(D(x_p), 1)                      (non-saturating, for Dec)
  Enc <- L_prior + L_llike;   Dec <- recon_vs_gan_weight * L_llike + [gate] L_gan;   Dis <- [gate] L_dis
Equilibrium balancing (the authors' code, equilibrium 0.68 / margin 0.35) on the discriminator's
global-batch mean BCE on reals and on generated images: D too good (a BCE below 0.33) -> Dis is
not trained this step; D too bad (a BCE above 1.03) -> the decoder's GAN term is dropped; both ->
both train. A gated-off update is a zero gradient, which GatedRMSprop skips.
Three RMSProp optimizers (lr 3e-4, rho 0.9; mean squares start at 1 and skip zero gradients: see
GatedRMSprop). Batch norm is synchronized; eps and z_p are drawn for the global batch.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf import losses
from alae_tf.models.base import Model, ModelConfig, apply, average, loss_scaled
from alae_tf.networks.vaegan import VAEGANDecoder, VAEGANDiscriminator, VAEGANEncoder, stages

_EPS, _PRIOR = range(2)  # purposes folded into the per-step seed


@dataclasses.dataclass
class VAEGANConfig(ModelConfig):
    """Architecture and objective of VAE-GAN."""

    model: str = "vaegan"
    resolution: int = 64
    latent_size: int = 128
    dense_units: int = 2048  # the encoder's dense layer
    discriminator_units: int = 512  # the discriminator's dense layer
    recon_vs_gan_weight: float = 1e-6
    equilibrium: float = 0.68
    margin: float = 0.35

    def __post_init__(self):
        if self.model != "vaegan":
            raise ValueError(f"--model must be vaegan for VAEGANConfig, got {self.model!r}")
        stages(self.resolution)
        super().__post_init__()
        if self.dense_units < 1 or self.discriminator_units < 1:
            raise ValueError(f"dense_units and discriminator_units must be positive, got {self.dense_units} "
                             f"and {self.discriminator_units}")
        if self.recon_vs_gan_weight < 0:
            raise ValueError(f"--recon_vs_gan_weight must be >= 0, got {self.recon_vs_gan_weight}")
        if self.margin < 0:
            raise ValueError(f"--margin must be >= 0, got {self.margin}")


@keras.saving.register_keras_serializable(package="alae_tf")
class GatedRMSprop(keras.optimizers.RMSprop):
    """RMSProp (rho 0.9, no momentum) whose mean squares start at 1 and skip zero gradients.

    - Where a gradient element is exactly 0, neither the weight nor its mean square moves, so a
      gated-off step (a zero gradient) leaves the network and its optimizer as they were.
      Keras' RMSprop would decay the mean squares meanwhile and make the first step after a long
      pause a ~ lr / sqrt(1 - rho) * sign(g) jump.
    - The mean squares start at 1, as in tf.compat.v1.train.RMSPropOptimizer. From Keras' 0, the
      first update is lr / sqrt(1 - rho) * sign(g) on every weight at once: enough to saturate the
      discriminator and blow the encoder's log-variance up (KL ~ 1e9 within a few steps on MNIST).
      From 1, the first steps are ~ lr * g and the mean squares reach the gradients' scale within
      a few dozen steps.
    """

    def __init__(self, learning_rate: float = 3e-4, rho: float = 0.9, epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, rho=rho, epsilon=epsilon, **kwargs)

    def build(self, var_list):
        super().build(var_list)
        self.restart()

    def restart(self):
        """Mean squares back to 1 (the other state is zeroed by the caller)."""
        for v in self._velocities:
            v.assign(tf.ones_like(v))

    def update_step(self, gradient, variable, learning_rate):
        lr = tf.cast(learning_rate, variable.dtype)
        g = tf.cast(gradient, variable.dtype)
        v = self._velocities[self._get_variable_index(variable)]
        self.assign(v, tf.where(tf.not_equal(g, 0), self.rho * v + (1.0 - self.rho) * tf.square(g), v))
        self.assign_sub(variable, lr * g / tf.sqrt(v + self.epsilon))

    def get_config(self):
        config = super().get_config()
        for key in ("momentum", "centered"):
            config.pop(key, None)
        return config


class VAEGAN(Model):
    """Encoder, decoder, discriminator, their RMSProp optimizers and the step counter."""

    def __init__(self, config: VAEGANConfig, learning_rate: float = 3e-4):
        super().__init__(config)
        c = config
        self._check_jit_with_batch_norm()
        kw = dict(resolution=c.resolution, channels=c.channels)
        self.E = VAEGANEncoder(latent_size=c.latent_size, dense_units=c.dense_units, **kw, name="encoder")
        self.Dec = VAEGANDecoder(latent_size=c.latent_size, **kw, name="decoder")
        self.Dis = VAEGANDiscriminator(dense_units=c.discriminator_units, **kw, name="discriminator")
        mean, _ = self.E(tf.zeros([1, c.resolution, c.resolution, c.channels]))  # builds all three
        self.Dis(self.Dec(mean))
        self.opt_e, self.opt_dec, self.opt_dis = (
            loss_scaled(GatedRMSprop(learning_rate=learning_rate), c.mixed_precision) for _ in range(3))
        for opt, net in self._groups():
            opt.build(net.trainable_variables)

    def _groups(self):
        return [(self.opt_e, self.E), (self.opt_dec, self.Dec), (self.opt_dis, self.Dis)]

    def networks(self) -> dict[str, keras.layers.Layer]:
        return {"E": self.E, "Dec": self.Dec, "Dis": self.Dis}

    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt_e": self.opt_e, "opt_dec": self.opt_dec, "opt_dis": self.opt_dis}

    def reset_optimizers(self):
        """Zeroes the optimizers' state, then restarts the mean squares at 1."""
        super().reset_optimizers()
        for opt in self.optimizers.values():
            getattr(opt, "inner_optimizer", opt).restart()

    def _grads(self, reals, global_batch: int):
        c = self.config
        ctx = tf.distribute.get_replica_context()
        local = tf.shape(reals)[0]
        eps = self._normal(_EPS, global_batch)
        z_p = self._normal(_PRIOR, global_batch)
        with tf.GradientTape(persistent=True) as tape:
            mean, log_var = self.E(reals, training=True)
            z = mean + tf.exp(0.5 * log_var) * eps
            decoded = self.Dec(tf.concat([z, z_p], axis=0), training=True)
            logits, features = self.Dis(tf.concat([tf.cast(reals, tf.float32), decoded], axis=0), training=True)
            real_logits, rec_logits, prior_logits = logits[:local], logits[local:2 * local], logits[2 * local:]
            kl = average(losses.gaussian_kl(mean, log_var), global_batch)
            recon = average(losses.feature_reconstruction(features[local:2 * local], features[:local]),
                            global_batch)
            real_bce = average(tf.nn.softplus(-real_logits), global_batch)
            fake_bce = average(0.5 * (tf.nn.softplus(rec_logits) + tf.nn.softplus(prior_logits)), global_batch)
            gan = average(tf.nn.softplus(-rec_logits) + tf.nn.softplus(-prior_logits), global_batch)
            # The gates: from the global batch's BCEs, so every replica decides the same.
            train_dis, train_dec = losses.equilibrium_gates(
                ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(real_bce)),
                ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(fake_bce)),
                c.equilibrium, c.margin)
            dis_gate, dec_gate = tf.cast(train_dis, tf.float32), tf.cast(train_dec, tf.float32)
            objectives = [kl + recon, c.recon_vs_gan_weight * recon + dec_gate * gan,
                          dis_gate * (real_bce + fake_bce)]
            objectives = [opt.scale_loss(loss) if c.mixed_precision else loss
                          for loss, (opt, _) in zip(objectives, self._groups())]
        grads = [tape.gradient(loss, net.trainable_variables) for loss, (_, net) in zip(objectives, self._groups())]
        del tape
        replicas = float(ctx.num_replicas_in_sync)
        terms = {"kl": kl, "recon": recon, "loss_gan": gan, "d_real_bce": real_bce, "d_fake_bce": fake_bce,
                 "train_dis": dis_gate / replicas, "train_dec_gan": dec_gate / replicas}
        return terms, grads

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """One simultaneous update of E, Dec and Dis (alpha and lod unused: one resolution)."""
        terms, grads = self._compiled(self._grads, global_batch=global_batch)(reals)
        for g, (opt, net) in zip(grads, self._groups()):
            apply(opt, g, net.trainable_variables)
        return terms

    def generate(self, z, **unused):
        """Dec(z), z ~ N(0, I) (the prior), with batch norm's moving statistics."""
        return self.decode(z)

    def encode(self, images, **unused):
        """The posterior mean mu(x)."""
        return tf.cast(self.E(tf.cast(images, tf.float32), training=False)[0], tf.float32)

    def decode(self, codes, **unused):
        return tf.cast(self.Dec(tf.cast(codes, tf.float32), training=False), tf.float32)
