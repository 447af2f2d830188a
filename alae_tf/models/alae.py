"""ALAE: the four networks, their EMA copies, the w average, and the three training steps.

Release order of one training iteration (Pidhorskyi et al. 2020, Alg. 1):
  1. D step: E and D learn to tell real images from G(F(z)) (non-saturating loss + R1).
  2. G step: F and G learn to fool E -> D.
  3. Latent autoencoder step: E, F and G learn E(G(F(z))) = F(z).

All random draws are stateless, seeded from (seed, step, purpose): latent codes and style-mixing
choices are drawn for the global batch and sliced per replica, so a run does not depend on how
the batch is split across replicas, and a resumed run draws what the uninterrupted run would.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf import losses
from alae_tf.layers import wide
from alae_tf.networks import WeightsTrackable
from alae_tf.networks.mapping import DiscriminatorHead, Mapping
from alae_tf.networks.mlp import MLPEncoder, MLPGenerator
from alae_tf.networks.style import StyleEncoder, StyleGenerator

# Purposes folded into the per-step seed.
_Z_D, _Z_D_MIX, _MIX_D, _NOISE_D, _Z_G, _Z_G_MIX, _MIX_G, _NOISE_G, _Z_LAE, _NOISE_LAE = range(10)


@dataclasses.dataclass
class ALAEConfig:
    """Architecture and training knobs of ALAE / StyleALAE."""

    model: str = "alae_style"  # alae_style | alae_mlp
    resolution: int = 32
    channels: int = 3
    latent_size: int = 512
    layer_count: int = 4
    start_channels: int = 64
    max_channels: int = 512
    mapping_layers: int = 8
    fused_from: int = 4
    mlp_hidden: tuple[int, ...] = (1024, 1024)
    r1_gamma: float = 10.0
    style_mixing_prob: float = 0.9
    ema_halflife_kimg: float = 10.0
    ttur: float = 1.0
    encoder_lr_mult: float = 1.0
    lae_weight: float = 1.0
    z_regression: bool = False
    truncation_psi: float = 0.7
    truncation_cutoff: int = 8
    w_avg_decay: float = 0.995
    mixed_precision: bool = False
    jit: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.model not in ("alae_style", "alae_mlp"):
            raise ValueError(f"--model must be alae_style or alae_mlp, got {self.model!r}")
        if self.model == "alae_style":
            expected = 4 * 2 ** (self.layer_count - 1)
            if self.resolution != expected:
                raise ValueError(
                    f"--layer_count={self.layer_count} gives {expected}x{expected} images but the "
                    f"resolution is {self.resolution}"
                )
        if self.channels not in (1, 3):
            raise ValueError(f"--channels must be 1 or 3, got {self.channels}")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise ValueError(f"--style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")

    @property
    def top_lod(self) -> int:
        return self.layer_count - 1 if self.model == "alae_style" else 0


def lod_resolution(lod: int) -> int:
    return 4 * 2 ** lod


class Networks:
    """F, G, E and D of one ALAE, built for every LOD."""

    def __init__(self, config: ALAEConfig, prefix: str = ""):
        c = config
        self.F = Mapping(c.latent_size, c.mapping_layers, name=f"{prefix}mapping")
        if c.model == "alae_style":
            kw = dict(layer_count=c.layer_count, latent_size=c.latent_size, channels=c.channels,
                      start_channels=c.start_channels, max_channels=c.max_channels, fused_from=c.fused_from)
            self.G = StyleGenerator(**kw, name=f"{prefix}generator")
            self.E = StyleEncoder(**kw, name=f"{prefix}encoder")
        else:
            kw = dict(resolution=c.resolution, latent_size=c.latent_size, channels=c.channels,
                      hidden=c.mlp_hidden)
            self.G = MLPGenerator(**kw, name=f"{prefix}generator")
            self.E = MLPEncoder(**kw, name=f"{prefix}encoder")
        self.D = DiscriminatorHead(c.latent_size, name=f"{prefix}discriminator")
        self._build(c)

    def _build(self, c: ALAEConfig):
        z = tf.zeros([1, c.latent_size])
        w = self.F(z)
        styles = tf.tile(w[:, None], [1, self.G.num_styles, 1])
        for lod in range(c.top_lod + 1):
            image = self.G(styles, lod=lod, alpha=0.5, noise=True)
            self.D(self.E(image, lod=lod, alpha=0.5))

    def as_dict(self) -> dict[str, keras.layers.Layer]:
        return {"F": self.F, "G": self.G, "E": self.E, "D": self.D}

    @property
    def variables(self) -> list[tf.Variable]:
        return [v for net in self.as_dict().values() for v in net.weights]


def apply(opt, grads, variables):
    """Applies the gradients that exist (variables of inactive LODs get none)."""
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if pairs:
        opt.apply_gradients(pairs)


def make_adam(learning_rate: float, mixed_precision: bool) -> keras.optimizers.Optimizer:
    """Adam with the release's betas (0, 0.99) and epsilon 1e-8."""
    opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.0, beta_2=0.99, epsilon=1e-8)
    return keras.optimizers.LossScaleOptimizer(opt) if mixed_precision else opt


class ALAE:
    """The ALAE model: networks, EMA networks, optimizers, w average and step functions.

    Build it inside ``strategy.scope()``. ``replica_step`` runs in replica context and returns
    loss terms already divided by the global batch (a SUM over replicas gives the mean);
    ``after_step`` runs in cross-replica context.
    """

    def __init__(self, config: ALAEConfig, learning_rate: float = 0.0015):
        self.config = c = config
        self.nets = Networks(c)
        self.ema = Networks(c, prefix="ema_")
        for dst, src in zip(self.ema.variables, self.nets.variables):
            dst.assign(src)
        self.w_avg = tf.Variable(tf.zeros([c.latent_size]), trainable=False, name="w_avg",
                                 aggregation=tf.VariableAggregation.MEAN)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.opt_e = make_adam(learning_rate, c.mixed_precision)
        self.opt_d = make_adam(learning_rate, c.mixed_precision)
        self.opt_fg = make_adam(learning_rate, c.mixed_precision)
        self.set_learning_rate(learning_rate)
        n = self.nets
        self.opt_e.build(n.E.trainable_variables)
        self.opt_d.build(n.D.trainable_variables)
        self.opt_fg.build(n.F.trainable_variables + n.G.trainable_variables)
        self._grad_fns: dict = {}

    # ----------------------------------------------------------------------------- state
    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt_e": self.opt_e, "opt_d": self.opt_d, "opt_fg": self.opt_fg}

    def checkpoint_items(self) -> dict:
        items = {name: WeightsTrackable(net) for name, net in self.nets.as_dict().items()}
        items.update({f"ema_{name}": WeightsTrackable(net) for name, net in self.ema.as_dict().items()})
        items.update(self.optimizers)
        items.update(w_avg=self.w_avg, step=self.step)
        return items

    def set_learning_rate(self, lr: float):
        c = self.config
        self.opt_fg.learning_rate.assign(lr)
        self.opt_d.learning_rate.assign(lr * c.ttur)
        self.opt_e.learning_rate.assign(lr * c.ttur * c.encoder_lr_mult)

    def reset_optimizers(self):
        """Zeroes Adam's moments and step counters (the release does this at every LOD change)."""
        for opt in self.optimizers.values():
            keep = {id(opt.learning_rate)}
            if isinstance(opt, keras.optimizers.LossScaleOptimizer):
                keep |= {id(v) for v in (opt.dynamic_scale, opt.step_counter)}
                keep.add(id(opt.inner_optimizer.learning_rate))
            for v in opt.variables:
                if id(v) not in keep:
                    v.assign(tf.zeros_like(v))

    # ----------------------------------------------------------------------------- randomness
    def _seed(self, purpose: int):
        base = tf.stack([tf.constant(self.config.seed, tf.int64), tf.cast(self.step, tf.int64)])
        return tf.random.experimental.stateless_fold_in(tf.cast(base, tf.int32), purpose)

    @staticmethod
    def _replica_slice(x, global_batch: int):
        ctx = tf.distribute.get_replica_context()
        n = ctx.num_replicas_in_sync
        local = global_batch // n
        start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
        return x[start:start + local]

    def _latents(self, purpose: int, global_batch: int):
        z = tf.random.stateless_normal([global_batch, self.config.latent_size], self._seed(purpose))
        return self._replica_slice(z, global_batch)

    def _replica_seed(self, purpose: int):
        rid = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.random.experimental.stateless_fold_in(self._seed(purpose), rid)

    # ----------------------------------------------------------------------------- networks
    def mixing_cutoff(self, seed, lod: int, inclusive: bool = True):
        """The style-mixing draw of one batch: with probability ``style_mixing_prob`` a cutoff
        uniform on {1, ..., A} (the ALAE release; A = 2 * (lod + 1) active slots) or on
        {1, ..., A - 1} (StyleGAN, ``inclusive=False``), else every slot (no mixing)."""
        num = self.nets.G.num_styles
        active = min(2 * (lod + 1), num)
        u = tf.random.stateless_uniform([], seed)
        cutoff = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 1),
                                             minval=1, maxval=active + int(inclusive), dtype=tf.int32)
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

    # ----------------------------------------------------------------------------- gradients
    @staticmethod
    def _gradients(tape, loss, groups):
        """One backward pass of ``loss`` for several (optimizer, variables) groups.

        Under mixed precision the loss is scaled by the first optimizer's loss scale and each
        group's gradients are rescaled to its own optimizer's scale (which unscales them).
        """
        variables = [v for _, vs in groups for v in vs]
        first = groups[0][0]
        if not isinstance(first, keras.optimizers.LossScaleOptimizer):
            grads = tape.gradient(loss, variables)
        else:
            scale = tf.cast(first.dynamic_scale, loss.dtype)
            grads = tape.gradient(loss, variables, output_gradients=scale)
        out, start = [], 0
        for opt, vs in groups:
            part = grads[start:start + len(vs)]
            start += len(vs)
            if opt is not first and isinstance(opt, keras.optimizers.LossScaleOptimizer):
                ratio = tf.cast(opt.dynamic_scale, tf.float32) / tf.cast(first.dynamic_scale, tf.float32)
                part = [None if g is None else g * tf.cast(ratio, g.dtype) for g in part]
            out.append(part)
        return out

    def _critic(self, images, lod: int, alpha):
        """D(E(x)): the logits the D and G steps use."""
        n = self.nets
        return wide(n.D(n.E(images, lod=lod, alpha=alpha)))

    def _d_groups(self) -> list:
        """(optimizer, variables) trained by the D step."""
        return [(self.opt_e, self.nets.E.trainable_variables), (self.opt_d, self.nets.D.trainable_variables)]

    def _fg_variables(self) -> list[tf.Variable]:
        return self.nets.F.trainable_variables + self.nets.G.trainable_variables

    # The three objectives from explicit draws (z, the mixing code and cutoff, the noise of G),
    # so that a test can feed them the release's own draws; the steps below draw them.
    def d_fakes(self, z, mix_z, cutoff, noise, lod: int, alpha):
        """(G(F(z)) with style mixing, without gradient; F(z)): the D step's fakes."""
        w, styles = self.styles(self.nets, z, lod, mix_z, cutoff)
        return tf.stop_gradient(self.nets.G(styles, lod=lod, alpha=alpha, noise=noise)), w

    def d_loss(self, reals, fakes, lod: int, alpha, global_batch: int):
        """(loss, terms) of the D step; call it under the tape that differentiates E and D."""
        c = self.config
        if lod > 0:  # fade the reals like G's output: lerp(upscale(downscale(x)), x, alpha)
            low = tf.repeat(tf.repeat(tf.nn.avg_pool2d(reals, 2, 2, "VALID"), 2, axis=1), 2, axis=2)
            reals = low + (reals - low) * alpha
        with tf.GradientTape() as r1_tape:
            r1_tape.watch(reals)
            real_logits = self._critic(reals, lod, alpha)
            real_sum = tf.reduce_sum(real_logits)
        real_grads = wide(r1_tape.gradient(real_sum, reals))
        r1 = losses.r1_penalty(real_grads, c.r1_gamma)
        fake_logits = self._critic(fakes, lod, alpha)
        adv = losses.discriminator_logistic(real_logits, fake_logits)
        loss = tf.nn.compute_average_loss(adv + r1, global_batch_size=global_batch)
        terms = {
            "loss_d": tf.nn.compute_average_loss(adv, global_batch_size=global_batch),
            "r1": tf.nn.compute_average_loss(r1, global_batch_size=global_batch),
            "d_real": tf.nn.compute_average_loss(real_logits, global_batch_size=global_batch),
            "d_fake": tf.nn.compute_average_loss(fake_logits, global_batch_size=global_batch),
        }
        return loss, terms

    def g_loss(self, z, mix_z, cutoff, noise, lod: int, alpha, global_batch: int):
        """(loss, F(z)) of the G step: softplus(-D(E(G(F(z))))) with style mixing."""
        w, styles = self.styles(self.nets, z, lod, mix_z, cutoff)
        fakes = self.nets.G(styles, lod=lod, alpha=alpha, noise=noise)
        fake_logits = self._critic(fakes, lod, alpha)
        return tf.nn.compute_average_loss(losses.generator_nonsaturating(fake_logits),
                                          global_batch_size=global_batch), w

    def lae_loss(self, z, noise, lod: int, alpha, global_batch: int):
        """(loss before --lae_weight, F(z)) of the latent autoencoder step: |E(G(w)) - w|^2, w = F(z)."""
        n, c = self.nets, self.config
        w, styles = self.styles(n, z, lod)
        fakes = n.G(styles, lod=lod, alpha=alpha, noise=noise)
        w_rec = wide(n.E(fakes, lod=lod, alpha=alpha))
        target = tf.cast(z if c.z_regression else w, w_rec.dtype)
        per_example = losses.latent_reconstruction(w_rec, target)
        return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch), w

    @staticmethod
    def _batch_mean(w):
        return tf.reduce_mean(tf.cast(w, tf.float32), axis=0)

    def _d_grads(self, reals, alpha, lod: int, global_batch: int):
        z = self._latents(_Z_D, global_batch)
        z2 = self._latents(_Z_D_MIX, global_batch)
        cutoff = self.mixing_cutoff(self._seed(_MIX_D), lod)
        fakes, w = self.d_fakes(z, z2, cutoff, self._replica_seed(_NOISE_D), lod, alpha)
        with tf.GradientTape() as tape:
            loss, terms = self.d_loss(reals, fakes, lod, alpha, global_batch)
        grads = self._gradients(tape, loss, self._d_groups())
        return terms, grads, self._batch_mean(w)

    def _g_grads(self, alpha, lod: int, global_batch: int):
        z = self._latents(_Z_G, global_batch)
        z2 = self._latents(_Z_G_MIX, global_batch)
        cutoff = self.mixing_cutoff(self._seed(_MIX_G), lod)
        variables = self._fg_variables()
        with tf.GradientTape() as tape:
            loss, w = self.g_loss(z, z2, cutoff, self._replica_seed(_NOISE_G), lod, alpha, global_batch)
        (grads,) = self._gradients(tape, loss, [(self.opt_fg, variables)])
        return {"loss_g": loss}, grads, self._batch_mean(w)

    def _lae_grads(self, alpha, lod: int, global_batch: int):
        n, c = self.nets, self.config
        z = self._latents(_Z_LAE, global_batch)
        with tf.GradientTape() as tape:
            lae, w = self.lae_loss(z, self._replica_seed(_NOISE_LAE), lod, alpha, global_batch)
            loss = lae * c.lae_weight
        grads_e, grads_fg = self._gradients(tape, loss, [
            (self.opt_e, n.E.trainable_variables),
            (self.opt_fg, n.F.trainable_variables + n.G.trainable_variables)])
        return {"loss_lae": lae}, grads_e, grads_fg, self._batch_mean(w)

    def _compiled(self, name: str, fn, lod: int, global_batch: int):
        """``fn`` specialised to (lod, global batch), XLA-compiled with --jit."""
        key = (name, lod, global_batch)
        if key not in self._grad_fns:
            def bound(*args):
                return fn(*args, lod=lod, global_batch=global_batch)
            self._grad_fns[key] = tf.function(bound, jit_compile=True) if self.config.jit else bound
        return self._grad_fns[key]

    # ----------------------------------------------------------------------------- steps
    def update_w_avg(self, w_mean):
        """w_avg <- lerp(w_avg, batch mean of F(z), 1 - w_avg_decay). Like the release, every step
        that runs F in training (D, G and latent AE steps) updates it."""
        self.w_avg.assign(w_mean + (self.w_avg - w_mean) * self.config.w_avg_decay)

    def d_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        terms, grads, w_mean = self._compiled("d", self._d_grads, lod, global_batch)(reals, alpha)
        for (opt, variables), part in zip(self._d_groups(), grads):
            apply(opt, part, variables)
        self.update_w_avg(w_mean)
        return terms

    def g_step(self, alpha, lod: int, global_batch: int) -> dict:
        terms, grads, w_mean = self._compiled("g", self._g_grads, lod, global_batch)(alpha)
        apply(self.opt_fg, grads, self._fg_variables())
        self.update_w_avg(w_mean)
        return terms

    def lae_step(self, alpha, lod: int, global_batch: int) -> dict:
        n = self.nets
        terms, grads_e, grads_fg, w_mean = self._compiled("lae", self._lae_grads, lod, global_batch)(alpha)
        apply(self.opt_e, grads_e, n.E.trainable_variables)
        apply(self.opt_fg, grads_fg, n.F.trainable_variables + n.G.trainable_variables)
        self.update_w_avg(w_mean)
        return terms

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """One ALAE iteration (D step, G step, latent AE step) on this replica's reals."""
        terms = self.d_step(reals, alpha, lod, global_batch)
        terms.update(self.g_step(alpha, lod, global_batch))
        terms.update(self.lae_step(alpha, lod, global_batch))
        return terms

    def ema_beta(self, global_batch: int) -> float:
        return 0.5 ** (global_batch / (self.config.ema_halflife_kimg * 1000.0))

    def after_step(self, global_batch: int):
        """EMA update (cross-replica context) and the step counter that seeds the next draws."""
        beta = self.ema_beta(global_batch)
        for ema_var, var in zip(self.ema.variables, self.nets.variables):
            ema_var.assign(var + (ema_var - var) * tf.cast(beta, var.dtype))
        self.step.assign_add(1)

    # ------------------------------------------------- inference (float32 under any policy)
    def generate(self, z, lod: int | None = None, alpha=1.0, truncation: bool = True,
                 noise=True, ema: bool = True):
        nets = self.ema if ema else self.nets
        lod = self.config.top_lod if lod is None else lod
        _, styles = self.styles(nets, z, lod)
        if truncation:
            styles = self.truncate(styles)
        return tf.cast(nets.G(styles, lod=lod, alpha=alpha, noise=noise), tf.float32)

    def encode(self, images, lod: int | None = None, alpha=1.0, ema: bool = True):
        nets = self.ema if ema else self.nets
        lod = self.config.top_lod if lod is None else lod
        return tf.cast(nets.E(images, lod=lod, alpha=alpha), tf.float32)

    def decode(self, w, lod: int | None = None, alpha=1.0, noise=True, ema: bool = True):
        nets = self.ema if ema else self.nets
        lod = self.config.top_lod if lod is None else lod
        styles = tf.tile(w[:, None], [1, nets.G.num_styles, 1])
        return tf.cast(nets.G(styles, lod=lod, alpha=alpha, noise=noise), tf.float32)

    def reconstruct(self, images, lod: int | None = None, alpha=1.0, ema: bool = True):
        return self.decode(self.encode(images, lod, alpha, ema), lod, alpha, ema=ema)

    def summary_images(self, z, reals, lod: int, alpha) -> dict:
        """EMA samples of fixed latents and EMA reconstructions of a fixed batch of reals."""
        return {"samples": self.generate(z, lod, alpha, truncation=False),
                "reconstructions": tf.concat([reals, self.reconstruct(reals, lod, alpha)], axis=0)}
