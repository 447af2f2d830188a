"""StyleGAN mode: ALAE's mapping F and style generator G against a conventional progressive
discriminator with minibatch stddev (Karras et al. 2019), no encoder, no latent autoencoder step.

One iteration: a D step (non-saturating loss + R1 on the reals, the reals faded like G's output
during a transition) and a G step (non-saturating loss; updates the w average). Progressive
growing, style mixing, truncation, the EMA of F and G and the stateless per-replica draws are
ALAE's (the methods are shared with alae_tf.models.alae.ALAE). The minibatch-stddev groups are
formed within each replica's batch.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf.models.alae import ALAE, make_adam
from alae_tf.networks import WeightsTrackable
from alae_tf.networks.mapping import Mapping
from alae_tf.networks.stylegan import ProgressiveDiscriminator
from alae_tf.networks.style import StyleGenerator


@dataclasses.dataclass
class StyleGANConfig:
    """Architecture and training knobs of StyleGAN mode (ALAE's, less the encoder's)."""

    model: str = "stylegan"
    resolution: int = 32
    channels: int = 3
    latent_size: int = 512
    layer_count: int = 4
    start_channels: int = 64
    max_channels: int = 512
    mapping_layers: int = 8
    fused_from: int = 4
    mbstd_group: int = 4
    r1_gamma: float = 10.0
    style_mixing_prob: float = 0.9
    ema_halflife_kimg: float = 10.0
    ttur: float = 1.0
    truncation_psi: float = 0.7
    truncation_cutoff: int = 8
    w_avg_decay: float = 0.995
    mixed_precision: bool = False
    jit: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.model != "stylegan":
            raise ValueError(f"--model must be stylegan for StyleGANConfig, got {self.model!r}")
        expected = 4 * 2 ** (self.layer_count - 1)
        if self.resolution != expected:
            raise ValueError(f"--layer_count={self.layer_count} gives {expected}x{expected} images but the "
                             f"resolution is {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"--channels must be 1 or 3, got {self.channels}")
        if self.latent_size < 1:
            raise ValueError(f"--latent_size must be at least 1, got {self.latent_size}")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise ValueError(f"--style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")
        if self.mbstd_group < 1:
            raise ValueError(f"mbstd_group must be at least 1, got {self.mbstd_group}")

    @property
    def top_lod(self) -> int:
        return self.layer_count - 1


class Networks:
    """F and G (and D unless ``with_d`` is False), built for every LOD."""

    def __init__(self, config: StyleGANConfig, prefix: str = "", with_d: bool = True):
        c = config
        self.F = Mapping(c.latent_size, c.mapping_layers, name=f"{prefix}mapping")
        self.G = StyleGenerator(layer_count=c.layer_count, latent_size=c.latent_size, channels=c.channels,
                                start_channels=c.start_channels, max_channels=c.max_channels,
                                fused_from=c.fused_from, name=f"{prefix}generator")
        self.D = ProgressiveDiscriminator(
            layer_count=c.layer_count, channels=c.channels, start_channels=c.start_channels,
            max_channels=c.max_channels, fused_from=c.fused_from, mbstd_group=c.mbstd_group,
            name=f"{prefix}discriminator") if with_d else None
        w = self.F(tf.zeros([1, c.latent_size]))
        styles = tf.tile(w[:, None], [1, self.G.num_styles, 1])
        for lod in range(c.top_lod + 1):
            image = self.G(styles, lod=lod, alpha=0.5, noise=True)
            if self.D is not None:
                self.D(image, lod=lod, alpha=0.5)

    def as_dict(self) -> dict[str, keras.layers.Layer]:
        nets = {"F": self.F, "G": self.G}
        if self.D is not None:
            nets["D"] = self.D
        return nets

    @property
    def generator_variables(self) -> list[tf.Variable]:
        return [v for net in (self.F, self.G) for v in net.weights]


class StyleGAN:
    """Networks, EMA of F and G, two Adam optimizers (betas 0, 0.99), the w average, the steps."""

    can_encode = False

    def __init__(self, config: StyleGANConfig, learning_rate: float = 0.0015):
        self.config = c = config
        self.nets = Networks(c)
        self.ema = Networks(c, prefix="ema_", with_d=False)
        for dst, src in zip(self.ema.generator_variables, self.nets.generator_variables):
            dst.assign(src)
        self.w_avg = tf.Variable(tf.zeros([c.latent_size]), trainable=False, name="w_avg",
                                 aggregation=tf.VariableAggregation.MEAN)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.opt_d = make_adam(learning_rate, c.mixed_precision)
        self.opt_fg = make_adam(learning_rate, c.mixed_precision)
        self.set_learning_rate(learning_rate)
        self.opt_d.build(self.nets.D.trainable_variables)
        self.opt_fg.build(self._fg_variables())
        self._grad_fns: dict = {}

    def _fg_variables(self) -> list[tf.Variable]:
        return self.nets.F.trainable_variables + self.nets.G.trainable_variables

    # ----------------------------------------------------------------------------- state
    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt_d": self.opt_d, "opt_fg": self.opt_fg}

    def checkpoint_items(self) -> dict:
        items = {name: WeightsTrackable(net) for name, net in self.nets.as_dict().items()}
        items.update({f"ema_{name}": WeightsTrackable(net) for name, net in self.ema.as_dict().items()})
        items.update(self.optimizers)
        items.update(w_avg=self.w_avg, step=self.step)
        return items

    def set_learning_rate(self, lr: float):
        self.opt_fg.learning_rate.assign(lr)
        self.opt_d.learning_rate.assign(lr * self.config.ttur)

    # ALAE's optimizer reset, seeding, per-replica slicing, style mixing, truncation and compile
    # cache read only config fields StyleGANConfig shares, self.step, self.w_avg and the optimizers.
    reset_optimizers = ALAE.reset_optimizers
    _seed = ALAE._seed
    _latents = ALAE._latents
    _replica_slice = staticmethod(ALAE._replica_slice)
    _replica_seed = ALAE._replica_seed
    styles = ALAE.styles
    truncate = ALAE.truncate
    update_w_avg = ALAE.update_w_avg
    _batch_mean = staticmethod(ALAE._batch_mean)

    def mixing_cutoff(self, seed, lod: int):
        """StyleGAN's draw: a cutoff uniform on {1, ..., active slots - 1} (always a crossover)."""
        return ALAE.mixing_cutoff(self, seed, lod, inclusive=False)
    _compiled = ALAE._compiled
    ema_beta = ALAE.ema_beta

    # ----------------------------------------------------------------------------- steps
    # ALAE's D and G steps, with D(x) as the critic where ALAE has D(E(x)).
    def _critic(self, images, lod: int, alpha):
        return tf.cast(self.nets.D(images, lod=lod, alpha=alpha), tf.float32)

    def _d_groups(self) -> list:
        return [(self.opt_d, self.nets.D.trainable_variables)]

    _gradients = staticmethod(ALAE._gradients)
    d_fakes = ALAE.d_fakes
    d_loss = ALAE.d_loss
    g_loss = ALAE.g_loss
    _d_grads = ALAE._d_grads
    _g_grads = ALAE._g_grads
    d_step = ALAE.d_step
    g_step = ALAE.g_step

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """One StyleGAN iteration (D step, G step) on this replica's reals."""
        terms = self.d_step(reals, alpha, lod, global_batch)
        terms.update(self.g_step(alpha, lod, global_batch))
        return terms

    def after_step(self, global_batch: int):
        """EMA of F and G (cross-replica context) and the step counter that seeds the next draws."""
        beta = self.ema_beta(global_batch)
        for ema_var, var in zip(self.ema.generator_variables, self.nets.generator_variables):
            ema_var.assign(var + (ema_var - var) * tf.cast(beta, var.dtype))
        self.step.assign_add(1)

    # ----------------------------------------------------------------------------- inference
    generate = ALAE.generate
    decode = ALAE.decode  # G from one w broadcast to every style slot

    def encode(self, images, **unused):
        raise ValueError("--model=stylegan has no encoder: it cannot encode or reconstruct images")

    def reconstruct(self, images, **unused):
        return self.encode(images)

    def summary_images(self, z, reals, lod: int, alpha) -> dict:
        """EMA samples of fixed latents (no truncation)."""
        return {"samples": self.generate(z, lod, alpha, truncation=False)}
