"""What every model shares: its config's common fields, the step counter and the stateless draws
it seeds, optimizers, gradients, the EMA, checkpoint items and the summary images.

The training loop (alae_tf.training.loop) drives a model only through ``Model``'s interface:
  replica_step(reals, alpha, lod, global_batch) -> dict   per-replica loss terms, already divided
                                                          by the global batch (replica context)
  after_step(global_batch)                                EMA and step counter (cross-replica)
  checkpoint_items() -> dict                              everything a resume needs
  set_learning_rate(lr), reset_optimizers()
  summary_images(z, reals, lod, alpha) -> dict            NHWC batches in [-1, 1] for the grids
  resolution(lod), config.latent_size, config.top_lod, step
  stage_names(), stage_at(images_seen), set_stage(stage)   training in stages (greedy layer-wise);
                                                          one stage unless a model overrides them
Inference: generate(z, ...), encode(images, ...), decode(codes, ...), reconstruct(images, ...).
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf.networks import WeightsTrackable


@dataclasses.dataclass
class ModelConfig:
    """The fields every model's config has; subclasses change defaults and add their own."""

    model: str = ""
    resolution: int = 32
    channels: int = 3
    latent_size: int = 512
    mixed_precision: bool = False
    jit: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"--channels must be 1 or 3, got {self.channels}")
        if self.latent_size < 1:
            raise ValueError(f"--latent_size must be at least 1, got {self.latent_size}")

    @property
    def top_lod(self) -> int:
        """The highest level of detail (0 is 4x4 for progressive models, the only one otherwise)."""
        return 0


def loss_scaled(opt: keras.optimizers.Optimizer, mixed_precision: bool) -> keras.optimizers.Optimizer:
    return keras.optimizers.LossScaleOptimizer(opt) if mixed_precision else opt


def make_adam(learning_rate: float, mixed_precision: bool, beta_1: float = 0.0, beta_2: float = 0.99,
              epsilon: float = 1e-8) -> keras.optimizers.Optimizer:
    """Adam; the defaults are the ALAE release's betas (0, 0.99) and epsilon."""
    opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
    return loss_scaled(opt, mixed_precision)


def apply(opt: keras.optimizers.Optimizer, grads, variables):
    """Applies the gradients that exist (variables of inactive LODs get none)."""
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if pairs:
        opt.apply_gradients(pairs)


def gradients(tape: tf.GradientTape, loss, groups: list) -> list[list]:
    """One backward pass of ``loss`` for several (optimizer, variables) groups.

    Under mixed precision the loss is scaled by the first optimizer's loss scale and each
    group's gradients are rescaled to its own optimizer's scale (which unscales them).
    """
    variables = [v for _, vs in groups for v in vs]
    first = groups[0][0]
    if not isinstance(first, keras.optimizers.LossScaleOptimizer):
        grads = tape.gradient(loss, variables)
    else:
        grads = tape.gradient(loss, variables, output_gradients=tf.cast(first.dynamic_scale, loss.dtype))
    out, start = [], 0
    for opt, vs in groups:
        part = grads[start:start + len(vs)]
        start += len(vs)
        if opt is not first and isinstance(opt, keras.optimizers.LossScaleOptimizer):
            ratio = tf.cast(opt.dynamic_scale, tf.float32) / tf.cast(first.dynamic_scale, tf.float32)
            part = [None if g is None else g * tf.cast(ratio, g.dtype) for g in part]
        out.append(part)
    return out


def average(per_example, global_batch: int):
    """This replica's share of the global-batch mean (a SUM over replicas gives the mean)."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)


class Model:
    """Base of ALAE and every baseline; see the module docstring for the interface.

    Build a model inside ``strategy.scope()``. A subclass calls ``__init__`` first, builds its
    networks and optimizers, and lists them in ``networks()`` and ``optimizers``; one with an
    EMA calls ``init_ema``; extra checkpointed variables go in ``state_variables()``.
    """

    can_encode = True

    def __init__(self, config: ModelConfig):
        self.config = config
        # Counts training steps; every random draw of a step is seeded by it.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._ema_pairs: list[tuple[tf.Variable, tf.Variable]] = []
        self._ema_nets: dict[str, keras.layers.Layer] = {}
        self._grad_fns: dict = {}

    # ----------------------------------------------------------------------------- state
    def networks(self) -> dict[str, keras.layers.Layer]:
        """The trained networks by checkpoint name."""
        raise NotImplementedError

    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        raise NotImplementedError

    def state_variables(self) -> dict[str, tf.Variable]:
        """Checkpointed variables besides networks, optimizers and the step."""
        return {}

    def checkpoint_items(self) -> dict:
        items = {name: WeightsTrackable(net) for name, net in self.networks().items()}
        items.update({f"ema_{name}": WeightsTrackable(net) for name, net in self._ema_nets.items()})
        items.update(self.optimizers)
        items.update(self.state_variables())
        items["step"] = self.step
        return items

    def set_learning_rate(self, lr: float):
        for opt in self.optimizers.values():
            opt.learning_rate.assign(lr)

    def reset_optimizers(self):
        """Zeroes every optimizer's moments and counters, keeping learning rates and loss scales
        (the ALAE release does this at every LOD change)."""
        for opt in self.optimizers.values():
            keep = {id(opt.learning_rate)}
            if isinstance(opt, keras.optimizers.LossScaleOptimizer):
                keep |= {id(v) for v in (opt.dynamic_scale, opt.step_counter)}
                keep.add(id(opt.inner_optimizer.learning_rate))
            for v in opt.variables:
                if id(v) not in keep:
                    v.assign(tf.zeros_like(v))

    # ----------------------------------------------------------------------------- stages
    # A model that trains in stages (greedy layer-wise training: each stage trains other variables)
    # names them in order; the loop asks stage_at(images seen) before every step and, when the
    # stage changes, calls set_stage(stage) before it builds that stage's step function (it keeps
    # one per (lod, batch, stage), so replica_step may read self.stage as a constant), resets the
    # optimizers, records the stage in the checkpoint and shows it in progress lines and TensorBoard.
    stage = 0

    def stage_names(self) -> list[str]:
        """The names of the training stages, in order (one unnamed stage by default)."""
        return [""]

    def stage_at(self, images_seen: int) -> int:
        """The stage that trains the step starting at ``images_seen``."""
        return 0

    def set_stage(self, stage: int):
        if not 0 <= stage < len(self.stage_names()):
            raise ValueError(f"stage {stage} is outside [0, {len(self.stage_names()) - 1}]")
        self.stage = stage

    def resolution(self, lod: int) -> int:
        """Image size at ``lod``."""
        return self.config.resolution >> (self.config.top_lod - lod)

    # ----------------------------------------------------------------------------- EMA
    def init_ema(self, ema_nets: dict[str, keras.layers.Layer]):
        """Tracks ``ema_nets`` (copies of networks of the same names) as the EMA, from a copy."""
        trained = self.networks()
        self._ema_nets = ema_nets
        self._ema_pairs = [(e, v) for name, net in ema_nets.items()
                           for e, v in zip(net.weights, trained[name].weights)]
        for ema_var, var in self._ema_pairs:
            ema_var.assign(var)

    def ema_beta(self, global_batch: int) -> float:
        return 0.5 ** (global_batch / (self.config.ema_halflife_kimg * 1000.0))

    def after_step(self, global_batch: int):
        """EMA update (cross-replica context) and the step counter that seeds the next draws."""
        if self._ema_pairs:
            beta = self.ema_beta(global_batch)
            for ema_var, var in self._ema_pairs:
                ema_var.assign(var + (ema_var - var) * tf.cast(beta, var.dtype))
        self.step.assign_add(1)

    # ----------------------------------------------------------------------------- randomness
    # Draws are stateless, seeded from (seed, step, purpose) and made for the global batch, then
    # sliced per replica: a run does not depend on how its batch is split, and a resumed run
    # draws what the uninterrupted run would.
    def _seed(self, purpose: int):
        base = tf.stack([tf.constant(self.config.seed, tf.int64), tf.cast(self.step, tf.int64)])
        return tf.random.experimental.stateless_fold_in(tf.cast(base, tf.int32), purpose)

    def _replica_seed(self, purpose: int):
        """A seed of its own for each replica (noise that need not match across batch splits)."""
        rid = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.random.experimental.stateless_fold_in(self._seed(purpose), rid)

    @staticmethod
    def _replica_slice(x, global_batch: int):
        ctx = tf.distribute.get_replica_context()
        local = global_batch // ctx.num_replicas_in_sync
        start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
        return x[start:start + local]

    def _normal(self, purpose: int, global_batch: int, shape=None):
        """This replica's slice of N(0, I) draws of shape [global_batch, *shape] (default latent_size)."""
        shape = [self.config.latent_size] if shape is None else list(shape)
        return self._replica_slice(tf.random.stateless_normal([global_batch] + shape, self._seed(purpose)),
                                   global_batch)

    # ----------------------------------------------------------------------------- compiling
    def _compiled(self, fn, **static):
        """``fn`` with its static arguments (lod, global batch) bound, XLA-compiled with --jit."""
        key = (fn.__name__, tuple(sorted(static.items())))
        if key not in self._grad_fns:
            def bound(*args):
                return fn(*args, **static)
            self._grad_fns[key] = tf.function(bound, jit_compile=True) if self.config.jit else bound
        return self._grad_fns[key]

    def _check_jit_with_batch_norm(self):
        if self.config.jit and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError(f"--jit works with --model={self.config.model} on one replica only (its "
                             f"synchronized batch norm all-reduces inside the XLA-compiled step)")

    # ----------------------------------------------------------------------------- inference
    def generate(self, z, **kwargs):
        raise NotImplementedError

    def decode(self, codes, **kwargs):
        raise NotImplementedError

    def encode(self, images, **kwargs):
        raise ValueError(f"--model={self.config.model} has no encoder: it cannot encode or reconstruct images")

    def reconstruct(self, images, **kwargs):
        return self.decode(self.encode(images, **kwargs), **kwargs)

    def summary_images(self, z, reals, lod: int, alpha) -> dict:
        """Samples of fixed latents (EMA networks where there are, no truncation) and, for a model
        with an encoder, a fixed batch of reals above their reconstructions."""
        images = {"samples": self.generate(z, lod=lod, alpha=alpha, truncation=False)}
        if self.can_encode:
            images["reconstructions"] = tf.concat([reals, self.reconstruct(reals, lod=lod, alpha=alpha)], axis=0)
        return images
