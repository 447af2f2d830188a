"""ALAE: the four networks, their EMA copies, the w average, and the three training steps.

Release order of one training iteration (Pidhorskyi et al. 2020, Alg. 1):
  1. D step: E and D learn to tell real images from G(F(z)) (non-saturating loss + R1).
  2. G step: F and G learn to fool E -> D.
  3. Latent autoencoder step: E, F and G learn E(G(F(z))) = F(z).

Latent codes and style-mixing choices are drawn for the global batch and sliced per replica
(see alae_tf.models.base).
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf import losses
from alae_tf.layers import wide
from alae_tf.models.base import apply, average, gradients, make_adam
from alae_tf.models.style import _NOISE_LAE, _Z_LAE, Networks, StyleConfig, StyleModel
from alae_tf.networks.mapping import DiscriminatorHead, Mapping
from alae_tf.networks.mlp import MLPEncoder, MLPGenerator
from alae_tf.networks.style import StyleEncoder, StyleGenerator


@dataclasses.dataclass
class ALAEConfig(StyleConfig):
    """Architecture and training knobs of ALAE / StyleALAE."""

    model: str = "alae_style"  # alae_style | alae_mlp
    mlp_hidden: tuple[int, ...] = (1024, 1024)
    encoder_lr_mult: float = 1.0
    lae_weight: float = 1.0
    z_regression: bool = False

    def __post_init__(self):
        if self.model not in ("alae_style", "alae_mlp"):
            raise ValueError(f"--model must be alae_style or alae_mlp, got {self.model!r}")
        super().__post_init__()

    @property
    def progressive(self) -> bool:
        return self.model == "alae_style"


def make_networks(c: ALAEConfig, prefix: str = "") -> Networks:
    """F, G, E and D of one ALAE, built for every LOD."""
    if c.model == "alae_style":
        kw = dict(layer_count=c.layer_count, latent_size=c.latent_size, channels=c.channels,
                  start_channels=c.start_channels, max_channels=c.max_channels, fused_from=c.fused_from)
        G, E = StyleGenerator(**kw, name=f"{prefix}generator"), StyleEncoder(**kw, name=f"{prefix}encoder")
    else:
        kw = dict(resolution=c.resolution, latent_size=c.latent_size, channels=c.channels, hidden=c.mlp_hidden)
        G, E = MLPGenerator(**kw, name=f"{prefix}generator"), MLPEncoder(**kw, name=f"{prefix}encoder")
    nets = Networks(F=Mapping(c.latent_size, c.mapping_layers, name=f"{prefix}mapping"), G=G, E=E,
                    D=DiscriminatorHead(c.latent_size, name=f"{prefix}discriminator"))
    return nets.build(c, critic=lambda image, lod: nets.D(nets.E(image, lod=lod, alpha=0.5)))


class ALAE(StyleModel):
    """The ALAE model: networks, EMA networks (all four), three Adam optimizers, the w average and
    the step functions; ``replica_step`` runs a D, a G and a latent autoencoder step."""

    can_encode = True

    def __init__(self, config: ALAEConfig, learning_rate: float = 0.0015):
        super().__init__(config, learning_rate)
        self.nets = make_networks(config)
        self.ema = make_networks(config, prefix="ema_")
        self.init_ema(self.ema.as_dict())
        self.opt_e = make_adam(learning_rate, config.mixed_precision)
        self.set_learning_rate(learning_rate)
        self.opt_e.build(self.nets.E.trainable_variables)
        self.opt_d.build(self.nets.D.trainable_variables)
        self.opt_fg.build(self._fg_variables())

    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt_e": self.opt_e, "opt_d": self.opt_d, "opt_fg": self.opt_fg}

    def set_learning_rate(self, lr: float):
        super().set_learning_rate(lr)
        self.opt_e.learning_rate.assign(lr * self.config.ttur * self.config.encoder_lr_mult)

    def _critic(self, images, lod: int, alpha):
        """D(E(x))."""
        return wide(self.nets.D(self.nets.E(images, lod=lod, alpha=alpha)))

    def _d_groups(self) -> list:
        return [(self.opt_e, self.nets.E.trainable_variables), (self.opt_d, self.nets.D.trainable_variables)]

    def _lae_groups(self) -> list:
        return [(self.opt_e, self.nets.E.trainable_variables), (self.opt_fg, self._fg_variables())]

    def lae_loss(self, z, noise, lod: int, alpha, global_batch: int):
        """(loss before --lae_weight, F(z)) of the latent autoencoder step: |E(G(w)) - w|^2, w = F(z)."""
        n, c = self.nets, self.config
        w, styles = self.styles(n, z, lod)
        fakes = n.G(styles, lod=lod, alpha=alpha, noise=noise)
        w_rec = wide(n.E(fakes, lod=lod, alpha=alpha))
        target = tf.cast(z if c.z_regression else w, w_rec.dtype)
        return average(losses.latent_reconstruction(w_rec, target), global_batch), w

    def _lae_grads(self, alpha, lod: int, global_batch: int):
        z = self._normal(_Z_LAE, global_batch)
        with tf.GradientTape() as tape:
            lae, w = self.lae_loss(z, self._replica_seed(_NOISE_LAE), lod, alpha, global_batch)
            loss = lae * self.config.lae_weight
        return {"loss_lae": lae}, gradients(tape, loss, self._lae_groups()), self._batch_mean(w)

    def lae_step(self, alpha, lod: int, global_batch: int) -> dict:
        terms, grads, w_mean = self._compiled(self._lae_grads, lod=lod, global_batch=global_batch)(alpha)
        for (opt, variables), part in zip(self._lae_groups(), grads):
            apply(opt, part, variables)
        self.update_w_avg(w_mean)
        return terms

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """One ALAE iteration (D step, G step, latent AE step) on this replica's reals."""
        terms = super().replica_step(reals, alpha, lod, global_batch)
        terms.update(self.lae_step(alpha, lod, global_batch))
        return terms

    def encode(self, images, lod: int | None = None, alpha=1.0, ema: bool = True):
        nets, lod = self._inference(lod, ema)
        return tf.cast(nets.E(images, lod=lod, alpha=alpha), tf.float32)
