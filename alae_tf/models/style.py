"""What ALAE and StyleGAN mode share: the mapping F and generator G with style mixing, truncation
and the w average, and the D and G steps (non-saturating loss, R1 on the reals).

The two differ in their critic: D(E(x)) for ALAE, a progressive discriminator D(x) for StyleGAN.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf import losses
from alae_tf.layers import wide
from alae_tf.models.base import Model, ModelConfig, apply, average, gradients, make_adam

# Purposes folded into the per-step seed.
_Z_D, _Z_D_MIX, _MIX_D, _NOISE_D, _Z_G, _Z_G_MIX, _MIX_G, _NOISE_G, _Z_LAE, _NOISE_LAE = range(10)


@dataclasses.dataclass
class StyleConfig(ModelConfig):
    """Fields of the style models (ALAE's and StyleGAN mode's)."""

    layer_count: int = 4
    start_channels: int = 64
    max_channels: int = 512
    mapping_layers: int = 8
    fused_from: int = 4
    r1_gamma: float = 10.0
    style_mixing_prob: float = 0.9
    ema_halflife_kimg: float = 10.0
    ttur: float = 1.0
    truncation_psi: float = 0.7
    truncation_cutoff: int = 8
    w_avg_decay: float = 0.995

    def __post_init__(self):
        super().__post_init__()
        if self.progressive:
            expected = 4 * 2 ** (self.layer_count - 1)
            if self.resolution != expected:
                raise ValueError(f"--layer_count={self.layer_count} gives {expected}x{expected} images but the "
                                 f"resolution is {self.resolution}")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise ValueError(f"--style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")

    @property
    def progressive(self) -> bool:
        return True

    @property
    def top_lod(self) -> int:
        return self.layer_count - 1 if self.progressive else 0


class Networks:
    """Named networks (F, G, E, D) as attributes, built for every LOD by ``build``."""

    def __init__(self, **nets: keras.layers.Layer):
        self._nets = nets
        for name, net in nets.items():
            setattr(self, name, net)

    def build(self, config: StyleConfig, critic=None):
        """Runs F, G and ``critic`` (images, lod) at every LOD so that all variables exist."""
        w = self.F(tf.zeros([1, config.latent_size]))
        styles = tf.tile(w[:, None], [1, self.G.num_styles, 1])
        for lod in range(config.top_lod + 1):
            image = self.G(styles, lod=lod, alpha=0.5, noise=True)
            if critic is not None:
                critic(image, lod)
        return self

    def as_dict(self) -> dict[str, keras.layers.Layer]:
        return dict(self._nets)

    @property
    def variables(self) -> list[tf.Variable]:
        return [v for net in self._nets.values() for v in net.weights]


class StyleModel(Model):
    """F and G against a critic; subclasses build ``nets`` (F, G, D and maybe E), ``ema``, the
    optimizers ``opt_fg`` and ``opt_d``, and define ``_critic`` and ``_d_groups``."""

    can_encode = False
    mixing_inclusive = True  # style-mixing cutoff on {1, ..., A}: the ALAE release; StyleGAN: A - 1

    def __init__(self, config: StyleConfig, learning_rate: float):
        super().__init__(config)
        self.w_avg = tf.Variable(tf.zeros([config.latent_size]), trainable=False, name="w_avg",
                                 aggregation=tf.VariableAggregation.MEAN)
        self.opt_d = make_adam(learning_rate, config.mixed_precision)
        self.opt_fg = make_adam(learning_rate, config.mixed_precision)

    def networks(self) -> dict[str, keras.layers.Layer]:
        return self.nets.as_dict()

    def state_variables(self) -> dict[str, tf.Variable]:
        return {"w_avg": self.w_avg}

    def set_learning_rate(self, lr: float):
        self.opt_fg.learning_rate.assign(lr)
        self.opt_d.learning_rate.assign(lr * self.config.ttur)

    def _fg_variables(self) -> list[tf.Variable]:
        return self.nets.F.trainable_variables + self.nets.G.trainable_variables

    # ----------------------------------------------------------------------------- styles
    def mixing_cutoff(self, seed, lod: int):
        """The style-mixing draw of one batch: with probability ``style_mixing_prob`` a cutoff
        uniform on {1, ..., A} (A = 2 * (lod + 1) active slots; {1, ..., A - 1} when
        ``mixing_inclusive`` is False), else every slot (no mixing)."""
        num = self.nets.G.num_styles
        active = min(2 * (lod + 1), num)
        u = tf.random.stateless_uniform([], seed)
        cutoff = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 1), minval=1,
                                             maxval=active + int(self.mixing_inclusive), dtype=tf.int32)
        return tf.where(u < self.config.style_mixing_prob, cutoff, num)

    def styles(self, nets: Networks, z, lod: int, mix_z=None, cutoff=None):
        """(w, styles): w = F(z) broadcast to G's style slots; with ``mix_z``, slots below
        ``cutoff`` keep F(z) and the rest take F(mix_z) (style mixing)."""
        w = nets.F(z)
        num = nets.G.num_styles
        styles = tf.tile(w[:, None], [1, num, 1])
        if mix_z is not None and self.config.style_mixing_prob > 0 and num > 1:
            w2 = nets.F(mix_z)
            first = tf.range(num)[None, :, None] < tf.cast(cutoff, tf.int32)
            styles = tf.where(first, styles, tf.tile(w2[:, None], [1, num, 1]))
        return w, styles

    def truncate(self, styles):
        """Truncation trick on the first ``truncation_cutoff`` slots: lerp(w_avg, w, psi)."""
        c = self.config
        psi = tf.where(tf.range(styles.shape[1]) < c.truncation_cutoff, c.truncation_psi, 1.0)
        w_avg = tf.cast(self.w_avg, styles.dtype)
        return w_avg + (styles - w_avg) * tf.cast(psi[None, :, None], styles.dtype)

    def update_w_avg(self, w_mean):
        """w_avg <- lerp(w_avg, batch mean of F(z), 1 - w_avg_decay). Like the release, every step
        that runs F in training updates it."""
        self.w_avg.assign(w_mean + (self.w_avg - w_mean) * self.config.w_avg_decay)

    @staticmethod
    def _batch_mean(w):
        return tf.reduce_mean(tf.cast(w, tf.float32), axis=0)

    # ----------------------------------------------------------------------------- objectives
    def _critic(self, images, lod: int, alpha):
        """The logits the D and G steps use (float32)."""
        raise NotImplementedError

    def _d_groups(self) -> list:
        """(optimizer, variables) trained by the D step."""
        raise NotImplementedError

    # The objectives from explicit draws (z, the mixing code and cutoff, the noise of G), so that
    # a test can feed them the release's own draws; the steps below draw them.
    def d_fakes(self, z, mix_z, cutoff, noise, lod: int, alpha):
        """(G(F(z)) with style mixing, without gradient; F(z)): the D step's fakes."""
        w, styles = self.styles(self.nets, z, lod, mix_z, cutoff)
        return tf.stop_gradient(self.nets.G(styles, lod=lod, alpha=alpha, noise=noise)), w

    def d_loss(self, reals, fakes, lod: int, alpha, global_batch: int):
        """(loss, terms) of the D step; call it under the tape that differentiates the critic."""
        if lod > 0:  # fade the reals like G's output: lerp(upscale(downscale(x)), x, alpha)
            low = tf.repeat(tf.repeat(tf.nn.avg_pool2d(reals, 2, 2, "VALID"), 2, axis=1), 2, axis=2)
            reals = low + (reals - low) * alpha
        with tf.GradientTape() as r1_tape:
            r1_tape.watch(reals)
            real_logits = self._critic(reals, lod, alpha)
            real_sum = tf.reduce_sum(real_logits)
        r1 = losses.r1_penalty(wide(r1_tape.gradient(real_sum, reals)), self.config.r1_gamma)
        fake_logits = self._critic(fakes, lod, alpha)
        adv = losses.discriminator_logistic(real_logits, fake_logits)
        terms = {"loss_d": average(adv, global_batch), "r1": average(r1, global_batch),
                 "d_real": average(real_logits, global_batch), "d_fake": average(fake_logits, global_batch)}
        return average(adv + r1, global_batch), terms

    def g_loss(self, z, mix_z, cutoff, noise, lod: int, alpha, global_batch: int):
        """(loss, F(z)) of the G step: softplus(-critic(G(F(z)))) with style mixing."""
        w, styles = self.styles(self.nets, z, lod, mix_z, cutoff)
        fakes = self.nets.G(styles, lod=lod, alpha=alpha, noise=noise)
        return average(losses.generator_nonsaturating(self._critic(fakes, lod, alpha)), global_batch), w

    def _d_grads(self, reals, alpha, lod: int, global_batch: int):
        z, z2 = self._normal(_Z_D, global_batch), self._normal(_Z_D_MIX, global_batch)
        cutoff = self.mixing_cutoff(self._seed(_MIX_D), lod)
        fakes, w = self.d_fakes(z, z2, cutoff, self._replica_seed(_NOISE_D), lod, alpha)
        with tf.GradientTape() as tape:
            loss, terms = self.d_loss(reals, fakes, lod, alpha, global_batch)
        return terms, gradients(tape, loss, self._d_groups()), self._batch_mean(w)

    def _g_grads(self, alpha, lod: int, global_batch: int):
        z, z2 = self._normal(_Z_G, global_batch), self._normal(_Z_G_MIX, global_batch)
        cutoff = self.mixing_cutoff(self._seed(_MIX_G), lod)
        with tf.GradientTape() as tape:
            loss, w = self.g_loss(z, z2, cutoff, self._replica_seed(_NOISE_G), lod, alpha, global_batch)
        (grads,) = gradients(tape, loss, [(self.opt_fg, self._fg_variables())])
        return {"loss_g": loss}, grads, self._batch_mean(w)

    # ----------------------------------------------------------------------------- steps
    def d_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        terms, grads, w_mean = self._compiled(self._d_grads, lod=lod, global_batch=global_batch)(reals, alpha)
        for (opt, variables), part in zip(self._d_groups(), grads):
            apply(opt, part, variables)
        self.update_w_avg(w_mean)
        return terms

    def g_step(self, alpha, lod: int, global_batch: int) -> dict:
        terms, grads, w_mean = self._compiled(self._g_grads, lod=lod, global_batch=global_batch)(alpha)
        apply(self.opt_fg, grads, self._fg_variables())
        self.update_w_avg(w_mean)
        return terms

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """A D step then a G step on this replica's reals."""
        terms = self.d_step(reals, alpha, lod, global_batch)
        terms.update(self.g_step(alpha, lod, global_batch))
        return terms

    # ------------------------------------------------- inference (float32 under any policy)
    def _inference(self, lod: int | None, ema: bool):
        return self.ema if ema else self.nets, self.config.top_lod if lod is None else lod

    def generate(self, z, lod: int | None = None, alpha=1.0, truncation: bool = True, noise=True,
                 ema: bool = True):
        nets, lod = self._inference(lod, ema)
        _, styles = self.styles(nets, z, lod)
        if truncation:
            styles = self.truncate(styles)
        return tf.cast(nets.G(styles, lod=lod, alpha=alpha, noise=noise), tf.float32)

    def decode(self, w, lod: int | None = None, alpha=1.0, noise=True, ema: bool = True):
        """G from one w broadcast to every style slot."""
        nets, lod = self._inference(lod, ema)
        styles = tf.tile(w[:, None], [1, nets.G.num_styles, 1])
        return tf.cast(nets.G(styles, lod=lod, alpha=alpha, noise=noise), tf.float32)
