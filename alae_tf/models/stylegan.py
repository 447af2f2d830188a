"""StyleGAN mode: ALAE's mapping F and style generator G against a conventional progressive
discriminator with minibatch stddev (Karras et al. 2019), no encoder, no latent autoencoder step.

One iteration: a D step (non-saturating loss + R1 on the reals, the reals faded like G's output
during a transition) and a G step (non-saturating loss; updates the w average). Progressive
growing, style mixing, truncation, the EMA of F and G and the stateless per-replica draws are
those of alae_tf.models.style.StyleModel, which ALAE shares. The minibatch-stddev groups are
formed within each replica's batch.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf.models.style import Networks, StyleConfig, StyleModel
from alae_tf.networks.mapping import Mapping
from alae_tf.networks.style import StyleGenerator
from alae_tf.networks.stylegan import ProgressiveDiscriminator


@dataclasses.dataclass
class StyleGANConfig(StyleConfig):
    """Architecture and training knobs of StyleGAN mode (ALAE's, less the encoder's)."""

    model: str = "stylegan"
    mbstd_group: int = 4

    def __post_init__(self):
        if self.model != "stylegan":
            raise ValueError(f"--model must be stylegan for StyleGANConfig, got {self.model!r}")
        super().__post_init__()
        if self.mbstd_group < 1:
            raise ValueError(f"mbstd_group must be at least 1, got {self.mbstd_group}")


def make_networks(c: StyleGANConfig, prefix: str = "", with_d: bool = True) -> Networks:
    """F and G (and D unless ``with_d`` is False), built for every LOD."""
    nets = dict(F=Mapping(c.latent_size, c.mapping_layers, name=f"{prefix}mapping"),
                G=StyleGenerator(layer_count=c.layer_count, latent_size=c.latent_size, channels=c.channels,
                                 start_channels=c.start_channels, max_channels=c.max_channels,
                                 fused_from=c.fused_from, name=f"{prefix}generator"))
    if with_d:
        nets["D"] = ProgressiveDiscriminator(
            layer_count=c.layer_count, channels=c.channels, start_channels=c.start_channels,
            max_channels=c.max_channels, fused_from=c.fused_from, mbstd_group=c.mbstd_group,
            name=f"{prefix}discriminator")
    out = Networks(**nets)
    return out.build(c, critic=(lambda image, lod: out.D(image, lod=lod, alpha=0.5)) if with_d else None)


class StyleGAN(StyleModel):
    """Networks, EMA of F and G, two Adam optimizers (betas 0, 0.99), the w average, the steps."""

    mixing_inclusive = False  # StyleGAN's draw: a cutoff on {1, ..., active slots - 1}, always a crossover

    def __init__(self, config: StyleGANConfig, learning_rate: float = 0.0015):
        super().__init__(config, learning_rate)
        self.nets = make_networks(config)
        self.ema = make_networks(config, prefix="ema_", with_d=False)
        self.init_ema(self.ema.as_dict())
        self.set_learning_rate(learning_rate)
        self.opt_d.build(self.nets.D.trainable_variables)
        self.opt_fg.build(self._fg_variables())

    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt_d": self.opt_d, "opt_fg": self.opt_fg}

    def _critic(self, images, lod: int, alpha):
        return tf.cast(self.nets.D(images, lod=lod, alpha=alpha), tf.float32)

    def _d_groups(self) -> list:
        return [(self.opt_d, self.nets.D.trainable_variables)]
