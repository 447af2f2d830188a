"""DCGAN (Radford et al. 2016).

One iteration: a D step (non-saturating loss on this replica's reals and on G(z)), then a G step
(non-saturating loss on G(z') for fresh z'); Adam (lr 2e-4, beta1 0.5, beta2 0.999) for each.
Batch norm is synchronized across replicas and z is drawn for the global batch, so a 2-replica
step equals a 1-replica step of the same global batch. No encoder.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf import losses
from alae_tf.models.base import Model, ModelConfig, apply, average, gradients, make_adam
from alae_tf.networks.dcgan import DCGANDiscriminator, DCGANGenerator, check_resolution

_Z_D, _Z_G = range(2)  # purposes folded into the per-step seed


@dataclasses.dataclass
class DCGANConfig(ModelConfig):
    """Architecture and optimizer of DCGAN."""

    model: str = "dcgan"
    resolution: int = 64
    latent_size: int = 100
    start_channels: int = 128  # feature maps next to the image (generator's last hidden layer)
    max_channels: int = 1024
    beta1: float = 0.5

    def __post_init__(self):
        if self.model != "dcgan":
            raise ValueError(f"--model must be dcgan for DCGANConfig, got {self.model!r}")
        check_resolution(self.resolution)
        super().__post_init__()
        if self.start_channels < 1 or self.max_channels < 1:
            raise ValueError(f"--start_channels and --max_channels must be positive, got "
                             f"{self.start_channels} and {self.max_channels}")
        if not 0.0 <= self.beta1 < 1.0:
            raise ValueError(f"beta1 must be in [0, 1), got {self.beta1}")


class DCGAN(Model):
    """G and D, their Adam optimizers and the step counter that seeds the draws."""

    can_encode = False

    def __init__(self, config: DCGANConfig, learning_rate: float = 2e-4):
        super().__init__(config)
        c = config
        self._check_jit_with_batch_norm()
        kw = dict(resolution=c.resolution, channels=c.channels, width=c.start_channels, max_width=c.max_channels)
        self.G = DCGANGenerator(latent_size=c.latent_size, **kw, name="generator")
        self.D = DCGANDiscriminator(**kw, name="discriminator")
        self.D(self.G(tf.zeros([1, c.latent_size])))  # builds both (inference mode: no statistics move)
        self.opt_g, self.opt_d = (make_adam(learning_rate, c.mixed_precision, beta_1=c.beta1, beta_2=0.999,
                                            epsilon=1e-7) for _ in range(2))
        self.opt_g.build(self.G.trainable_variables)
        self.opt_d.build(self.D.trainable_variables)

    def networks(self) -> dict[str, keras.layers.Layer]:
        return {"G": self.G, "D": self.D}

    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def _d_grads(self, reals, global_batch: int):
        fakes = tf.stop_gradient(self.G(self._normal(_Z_D, global_batch), training=True))
        with tf.GradientTape() as tape:
            real_logits = self.D(reals, training=True)
            fake_logits = self.D(fakes, training=True)
            loss = average(losses.discriminator_logistic(real_logits, fake_logits), global_batch)
        (grads,) = gradients(tape, loss, [(self.opt_d, self.D.trainable_variables)])
        terms = {"loss_d": loss, "d_real": average(real_logits, global_batch),
                 "d_fake": average(fake_logits, global_batch)}
        return terms, grads

    def _g_grads(self, global_batch: int):
        with tf.GradientTape() as tape:
            fake_logits = self.D(self.G(self._normal(_Z_G, global_batch), training=True), training=True)
            loss = average(losses.generator_nonsaturating(fake_logits), global_batch)
        (grads,) = gradients(tape, loss, [(self.opt_g, self.G.trainable_variables)])
        return {"loss_g": loss}, grads

    def d_step(self, reals, global_batch: int) -> dict:
        terms, grads = self._compiled(self._d_grads, global_batch=global_batch)(reals)
        apply(self.opt_d, grads, self.D.trainable_variables)
        return terms

    def g_step(self, global_batch: int) -> dict:
        terms, grads = self._compiled(self._g_grads, global_batch=global_batch)()
        apply(self.opt_g, grads, self.G.trainable_variables)
        return terms

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """A D step then a G step (alpha and lod unused: one resolution)."""
        terms = self.d_step(reals, global_batch)
        terms.update(self.g_step(global_batch))
        return terms

    def generate(self, z, **unused):
        """G(z) with batch norm's moving statistics (no truncation: DCGAN has no w space)."""
        return tf.cast(self.G(tf.cast(z, tf.float32), training=False), tf.float32)

    def decode(self, z, **unused):
        return self.generate(z)
