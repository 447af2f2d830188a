"""VAE-GAN (Larsen et al. 2016) behind ALAE's model interface.

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
GatedRMSprop).
Batch norm is synchronized; eps and z_p are drawn for the global batch from (seed, step, purpose)
and sliced per replica.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf import losses
from alae_tf.models.alae import ALAE, apply
from alae_tf.networks import WeightsTrackable
from alae_tf.networks.vaegan import VAEGANDecoder, VAEGANDiscriminator, VAEGANEncoder, stages

_EPS, _PRIOR = range(2)  # purposes folded into the per-step seed


@dataclasses.dataclass
class VAEGANConfig:
    """Architecture and objective of VAE-GAN."""

    model: str = "vaegan"
    resolution: int = 64
    channels: int = 3
    latent_size: int = 128
    dense_units: int = 2048  # the encoder's dense layer
    discriminator_units: int = 512  # the discriminator's dense layer
    recon_vs_gan_weight: float = 1e-6
    equilibrium: float = 0.68
    margin: float = 0.35
    mixed_precision: bool = False
    jit: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.model != "vaegan":
            raise ValueError(f"--model must be vaegan for VAEGANConfig, got {self.model!r}")
        stages(self.resolution)
        if self.channels not in (1, 3):
            raise ValueError(f"--channels must be 1 or 3, got {self.channels}")
        if self.latent_size < 1:
            raise ValueError(f"--latent_size must be at least 1, got {self.latent_size}")
        if self.dense_units < 1 or self.discriminator_units < 1:
            raise ValueError(f"dense_units and discriminator_units must be positive, got {self.dense_units} "
                             f"and {self.discriminator_units}")
        if self.recon_vs_gan_weight < 0:
            raise ValueError(f"--recon_vs_gan_weight must be >= 0, got {self.recon_vs_gan_weight}")
        if self.margin < 0:
            raise ValueError(f"--margin must be >= 0, got {self.margin}")

    @property
    def top_lod(self) -> int:
        return 0


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


def make_rmsprop(learning_rate: float, mixed_precision: bool) -> keras.optimizers.Optimizer:
    opt = GatedRMSprop(learning_rate=learning_rate)
    return keras.optimizers.LossScaleOptimizer(opt) if mixed_precision else opt


def _rmsprop(opt: keras.optimizers.Optimizer) -> GatedRMSprop:
    return opt.inner_optimizer if isinstance(opt, keras.optimizers.LossScaleOptimizer) else opt


class VAEGAN:
    """Encoder, decoder, discriminator, their RMSProp optimizers and the step counter."""

    can_encode = True

    def __init__(self, config: VAEGANConfig, learning_rate: float = 3e-4):
        self.config = c = config
        if c.jit and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError("--jit works with --model=vaegan on one replica only (its synchronized batch norm "
                             "all-reduces inside the XLA-compiled step)")
        kw = dict(resolution=c.resolution, channels=c.channels)
        self.E = VAEGANEncoder(latent_size=c.latent_size, dense_units=c.dense_units, **kw, name="encoder")
        self.Dec = VAEGANDecoder(latent_size=c.latent_size, **kw, name="decoder")
        self.Dis = VAEGANDiscriminator(dense_units=c.discriminator_units, **kw, name="discriminator")
        mean, _ = self.E(tf.zeros([1, c.resolution, c.resolution, c.channels]))  # builds all three
        self.Dis(self.Dec(mean))
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.opt_e = make_rmsprop(learning_rate, c.mixed_precision)
        self.opt_dec = make_rmsprop(learning_rate, c.mixed_precision)
        self.opt_dis = make_rmsprop(learning_rate, c.mixed_precision)
        for opt, net in self._groups():
            opt.build(net.trainable_variables)
        self._grad_fns: dict = {}

    def _groups(self):
        return [(self.opt_e, self.E), (self.opt_dec, self.Dec), (self.opt_dis, self.Dis)]

    # ----------------------------------------------------------------------------- state
    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt_e": self.opt_e, "opt_dec": self.opt_dec, "opt_dis": self.opt_dis}

    def checkpoint_items(self) -> dict:
        return {"E": WeightsTrackable(self.E), "Dec": WeightsTrackable(self.Dec),
                "Dis": WeightsTrackable(self.Dis), **self.optimizers, "step": self.step}

    def set_learning_rate(self, lr: float):
        for opt in self.optimizers.values():
            opt.learning_rate.assign(lr)

    def reset_optimizers(self):
        """Zeroes the optimizers' state as ALAE does, then restarts the mean squares at 1."""
        ALAE.reset_optimizers(self)
        for opt in self.optimizers.values():
            _rmsprop(opt).restart()

    # ALAE's seeding and per-replica slicing read only config.seed, config.latent_size and self.step.
    _seed = ALAE._seed
    _latents = ALAE._latents
    _replica_slice = staticmethod(ALAE._replica_slice)

    # ----------------------------------------------------------------------------- training
    def _grads(self, reals, global_batch: int):
        c = self.config
        ctx = tf.distribute.get_replica_context()
        local = tf.shape(reals)[0]
        eps = self._latents(_EPS, global_batch)
        z_p = self._latents(_PRIOR, global_batch)

        def average(per_example):
            return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)

        with tf.GradientTape(persistent=True) as tape:
            mean, log_var = self.E(reals, training=True)
            z = mean + tf.exp(0.5 * log_var) * eps
            decoded = self.Dec(tf.concat([z, z_p], axis=0), training=True)
            logits, features = self.Dis(tf.concat([tf.cast(reals, tf.float32), decoded], axis=0), training=True)
            real_logits, rec_logits, prior_logits = logits[:local], logits[local:2 * local], logits[2 * local:]
            kl = average(losses.gaussian_kl(mean, log_var))
            recon = average(losses.feature_reconstruction(features[local:2 * local], features[:local]))
            real_bce = average(tf.nn.softplus(-real_logits))
            fake_bce = average(0.5 * (tf.nn.softplus(rec_logits) + tf.nn.softplus(prior_logits)))
            gan = average(tf.nn.softplus(-rec_logits) + tf.nn.softplus(-prior_logits))
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

    def _compiled(self, global_batch: int):
        if global_batch not in self._grad_fns:
            def bound(reals):
                return self._grads(reals, global_batch=global_batch)
            self._grad_fns[global_batch] = tf.function(bound, jit_compile=True) if self.config.jit else bound
        return self._grad_fns[global_batch]

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """One simultaneous update of E, Dec and Dis (alpha and lod unused: one resolution)."""
        terms, grads = self._compiled(global_batch)(reals)
        for g, (opt, net) in zip(grads, self._groups()):
            apply(opt, g, net.trainable_variables)
        return terms

    def after_step(self, global_batch: int):
        self.step.assign_add(1)

    # ----------------------------------------------------------------------------- inference
    def generate(self, z, truncation: bool = False, **unused):
        """Dec(z), z ~ N(0, I) (the prior), with batch norm's moving statistics."""
        return self.decode(z)

    def encode(self, images, **unused):
        """The posterior mean mu(x)."""
        return tf.cast(self.E(tf.cast(images, tf.float32), training=False)[0], tf.float32)

    def decode(self, codes, **unused):
        return tf.cast(self.Dec(tf.cast(codes, tf.float32), training=False), tf.float32)

    def reconstruct(self, images, **unused):
        return self.decode(self.encode(images))

    def summary_images(self, z, reals, lod: int, alpha) -> dict:
        return {"samples": self.generate(z),
                "reconstructions": tf.concat([reals, self.reconstruct(reals)], axis=0)}
