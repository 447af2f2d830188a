"""DCGAN (Radford et al. 2016) behind ALAE's model interface.

One iteration: a D step (non-saturating loss on this replica's reals and on G(z)), then a G step
(non-saturating loss on G(z') for fresh z'); Adam (lr 2e-4, beta1 0.5, beta2 0.999) for each.
Batch norm is synchronized across replicas and z is drawn for the global batch from (seed, step,
purpose) and sliced per replica, so a 2-replica step equals a 1-replica step of the same global
batch. No encoder: ``can_encode`` is False.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf import losses
from alae_tf.models.alae import ALAE, apply
from alae_tf.networks import WeightsTrackable
from alae_tf.networks.dcgan import DCGANDiscriminator, DCGANGenerator, check_resolution

_Z_D, _Z_G = range(2)  # purposes folded into the per-step seed


@dataclasses.dataclass
class DCGANConfig:
    """Architecture and optimizer of DCGAN."""

    model: str = "dcgan"
    resolution: int = 64
    channels: int = 3
    latent_size: int = 100
    start_channels: int = 128  # feature maps next to the image (generator's last hidden layer)
    max_channels: int = 1024
    beta1: float = 0.5
    mixed_precision: bool = False
    jit: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.model != "dcgan":
            raise ValueError(f"--model must be dcgan for DCGANConfig, got {self.model!r}")
        check_resolution(self.resolution)
        if self.channels not in (1, 3):
            raise ValueError(f"--channels must be 1 or 3, got {self.channels}")
        if self.latent_size < 1:
            raise ValueError(f"--latent_size must be at least 1, got {self.latent_size}")
        if self.start_channels < 1 or self.max_channels < 1:
            raise ValueError(f"--start_channels and --max_channels must be positive, got "
                             f"{self.start_channels} and {self.max_channels}")
        if not 0.0 <= self.beta1 < 1.0:
            raise ValueError(f"beta1 must be in [0, 1), got {self.beta1}")

    @property
    def top_lod(self) -> int:
        return 0


def make_adam(learning_rate: float, beta1: float, mixed_precision: bool) -> keras.optimizers.Optimizer:
    opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta1, beta_2=0.999)
    return keras.optimizers.LossScaleOptimizer(opt) if mixed_precision else opt


class DCGAN:
    """G and D, their Adam optimizers and the step counter that seeds the draws."""

    can_encode = False

    def __init__(self, config: DCGANConfig, learning_rate: float = 2e-4):
        self.config = c = config
        if c.jit and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError("--jit works with --model=dcgan on one replica only (its synchronized batch norm "
                             "all-reduces inside the XLA-compiled step)")
        kw = dict(resolution=c.resolution, channels=c.channels, width=c.start_channels, max_width=c.max_channels)
        self.G = DCGANGenerator(latent_size=c.latent_size, **kw, name="generator")
        self.D = DCGANDiscriminator(**kw, name="discriminator")
        self.D(self.G(tf.zeros([1, c.latent_size])))  # builds both (inference mode: no statistics move)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.opt_g = make_adam(learning_rate, c.beta1, c.mixed_precision)
        self.opt_d = make_adam(learning_rate, c.beta1, c.mixed_precision)
        self.opt_g.build(self.G.trainable_variables)
        self.opt_d.build(self.D.trainable_variables)
        self._grad_fns: dict = {}

    # ----------------------------------------------------------------------------- state
    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def checkpoint_items(self) -> dict:
        return {"G": WeightsTrackable(self.G), "D": WeightsTrackable(self.D), **self.optimizers, "step": self.step}

    def set_learning_rate(self, lr: float):
        for opt in self.optimizers.values():
            opt.learning_rate.assign(lr)

    # ALAE's optimizer reset, seeding and per-replica slicing read only config.seed,
    # config.latent_size, self.step and self.optimizers.
    reset_optimizers = ALAE.reset_optimizers
    _seed = ALAE._seed
    _latents = ALAE._latents
    _replica_slice = staticmethod(ALAE._replica_slice)

    # ----------------------------------------------------------------------------- steps
    def _d_grads(self, reals, global_batch: int):
        z = self._latents(_Z_D, global_batch)
        fakes = tf.stop_gradient(self.G(z, training=True))
        with tf.GradientTape() as tape:
            real_logits = self.D(reals, training=True)
            fake_logits = self.D(fakes, training=True)
            loss = tf.nn.compute_average_loss(losses.discriminator_logistic(real_logits, fake_logits),
                                              global_batch_size=global_batch)
        (grads,) = ALAE._gradients(tape, loss, [(self.opt_d, self.D.trainable_variables)])
        terms = {"loss_d": loss,
                 "d_real": tf.nn.compute_average_loss(real_logits, global_batch_size=global_batch),
                 "d_fake": tf.nn.compute_average_loss(fake_logits, global_batch_size=global_batch)}
        return terms, grads

    def _g_grads(self, global_batch: int):
        z = self._latents(_Z_G, global_batch)
        with tf.GradientTape() as tape:
            fake_logits = self.D(self.G(z, training=True), training=True)
            loss = tf.nn.compute_average_loss(losses.generator_nonsaturating(fake_logits),
                                              global_batch_size=global_batch)
        (grads,) = ALAE._gradients(tape, loss, [(self.opt_g, self.G.trainable_variables)])
        return {"loss_g": loss}, grads

    def _compiled(self, name: str, fn, global_batch: int):
        key = (name, global_batch)
        if key not in self._grad_fns:
            def bound(*args):
                return fn(*args, global_batch=global_batch)
            self._grad_fns[key] = tf.function(bound, jit_compile=True) if self.config.jit else bound
        return self._grad_fns[key]

    def d_step(self, reals, global_batch: int) -> dict:
        terms, grads = self._compiled("d", self._d_grads, global_batch)(reals)
        apply(self.opt_d, grads, self.D.trainable_variables)
        return terms

    def g_step(self, global_batch: int) -> dict:
        terms, grads = self._compiled("g", self._g_grads, global_batch)()
        apply(self.opt_g, grads, self.G.trainable_variables)
        return terms

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """A D step then a G step (alpha and lod unused: one resolution)."""
        terms = self.d_step(reals, global_batch)
        terms.update(self.g_step(global_batch))
        return terms

    def after_step(self, global_batch: int):
        self.step.assign_add(1)

    # ----------------------------------------------------------------------------- inference
    def generate(self, z, truncation: bool = False, **unused):
        """G(z) with batch norm's moving statistics (no truncation: DCGAN has no w space)."""
        return tf.cast(self.G(tf.cast(z, tf.float32), training=False), tf.float32)

    def decode(self, z, **unused):
        return self.generate(z)

    def encode(self, images, **unused):
        raise ValueError("--model=dcgan has no encoder: it cannot encode or reconstruct images")

    def reconstruct(self, images, **unused):
        return self.encode(images)

    def summary_images(self, z, reals, lod: int, alpha) -> dict:
        return {"samples": self.generate(z)}
