"""The strategy-agnostic training loop.

The loop knows a model only through this interface (ALAE and the baselines share it):
  replica_step(reals, alpha, lod, global_batch) -> dict of per-replica loss terms (replica context)
  after_step(global_batch)                         cross-replica bookkeeping (EMA, step counter)
  checkpoint_items() -> dict                        everything a resume needs
  set_learning_rate(lr), reset_optimizers()
  summary_images(z, reals, lod, alpha) -> dict of NHWC [-1, 1] batches
  config.latent_size, config.top_lod
It owns the strategy, the data, the schedule, checkpoints, summaries and progress.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from alae_tf import data as data_lib
from alae_tf.schedule import Schedule
from alae_tf.training.checkpoints import Checkpointer
from alae_tf.training.strategy import is_chief
from alae_tf.training.summaries import Summaries


@dataclasses.dataclass
class LoopConfig:
    """What the loop needs besides the model and the schedule."""

    output_dir: str
    data_dir: str
    total_images: int
    snapshot_images: int = 20_000
    checkpoint_images: int = 50_000
    keep_checkpoints: int = 3
    log_seconds: float = 10.0
    summary_steps: int = 50
    mirror: bool = False
    seed: int = 0
    grid_size: int = 32
    data_lod_offset: int = 0  # dataset LOD = model LOD + offset (the MLP model has one LOD)


class TrainingError(RuntimeError):
    """A failure during training that the user can act on (message says what and where)."""


def check_batches(schedule: Schedule, replicas: int):
    """Every LOD's global batch must split evenly across the replicas."""
    for lod, batch in enumerate(schedule.batch_sizes):
        if batch % replicas:
            raise ValueError(
                f"--batch_sizes: the batch of LOD {lod} ({batch}) does not divide across "
                f"{replicas} replicas; use a multiple of {replicas}"
            )


class Trainer:
    """Runs a model under a strategy from images seen = 0 (or the last checkpoint) to the end."""

    def __init__(self, model_fn: Callable[[], object], schedule: Schedule,
                 strategy: tf.distribute.Strategy, config: LoopConfig):
        self.schedule, self.strategy, self.config = schedule, strategy, config
        check_batches(schedule, strategy.num_replicas_in_sync)
        self.chief = is_chief(strategy)
        with strategy.scope():
            self.model = model_fn()
            self.images_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="images_seen")
            # The LOD the optimizer state belongs to: a resume at another LOD resets it.
            self.state_lod = tf.Variable(-1, dtype=tf.int64, trainable=False, name="lod")
        items = dict(self.model.checkpoint_items(), images_seen=self.images_seen, lod=self.state_lod)
        self.checkpointer = Checkpointer(config.output_dir, items, self.chief, config.keep_checkpoints)
        self.summaries = Summaries(config.output_dir, self.chief)
        self._steps: dict = {}
        rng = np.random.default_rng(config.seed)
        self.grid_z = tf.constant(rng.standard_normal((config.grid_size, self.model.config.latent_size)),
                                  tf.float32)

    # ------------------------------------------------------------------ data and steps
    def _dataset(self, lod: int, global_batch: int):
        cfg = self.config

        def dataset_fn(ctx: tf.distribute.InputContext):
            return data_lib.make_dataset(
                cfg.data_dir, lod + cfg.data_lod_offset, ctx.get_per_replica_batch_size(global_batch), mirror=cfg.mirror,
                shuffle=True, repeat=True, seed=cfg.seed + int(self.images_seen.numpy()),
                input_context=ctx)

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

    def _fixed_reals(self, lod: int) -> tf.Tensor:
        ds = data_lib.make_dataset(self.config.data_dir, lod + self.config.data_lod_offset, min(16, self.config.grid_size),
                                   shuffle=False, repeat=False)
        return next(iter(ds))

    def _step_fn(self, lod: int, global_batch: int):
        key = (lod, global_batch)
        if key not in self._steps:
            model, strategy = self.model, self.strategy

            @tf.function
            def step(iterator, alpha):
                reals = next(iterator)
                terms = strategy.run(model.replica_step, args=(reals, alpha),
                                     kwargs=dict(lod=lod, global_batch=global_batch))
                model.after_step(global_batch)
                return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                        for k, v in terms.items()}

            self._steps[key] = step
        return self._steps[key]

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        """Trains to ``total_images``; returns the last reduced loss terms."""
        cfg, schedule = self.config, self.schedule
        restored = self.checkpointer.restore()
        seen = int(self.images_seen.numpy())
        if restored:
            logging.info("resuming at %.1f kimg", seen / 1000)
        if seen >= cfg.total_images:
            logging.info("already trained %d of %d images: nothing to do", seen, cfg.total_images)
            return {}
        alpha_var = tf.Variable(1.0, trainable=False, name="alpha")
        lod, iterator, step, fixed_reals = None, None, None, None
        terms: dict = {}
        next_snapshot = (seen // cfg.snapshot_images + 1) * cfg.snapshot_images
        next_checkpoint = (seen // cfg.checkpoint_images + 1) * cfg.checkpoint_images
        last_log = t_rate = time.time()
        seen_at_rate = seen
        rate = 0.0
        steps = 0
        while seen < cfg.total_images:
            phase = schedule.phase(seen)
            if phase.lod != lod:
                lod, batch = phase.lod, phase.batch_size
                if int(self.state_lod.numpy()) != lod:
                    if int(self.state_lod.numpy()) >= 0:
                        logging.info("LOD %d -> %d: resetting optimizer state", int(self.state_lod.numpy()), lod)
                    self.model.reset_optimizers()
                    self.state_lod.assign(lod)
                self.model.set_learning_rate(phase.learning_rate)
                iterator = self._dataset(lod, batch)
                step = self._step_fn(lod, batch)
                fixed_reals = self._fixed_reals(lod)
                res = 4 * 2 ** (lod + cfg.data_lod_offset)
                logging.info("LOD %d (%dx%d): batch %d, learning rate %g", lod, res, res, batch,
                             phase.learning_rate)
            alpha_var.assign(phase.alpha)
            try:
                terms = step(iterator, alpha_var)
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
                # A bad record: name the file and record (DataLossError itself names neither).
                error = data_lib.diagnose(cfg.data_dir, lod + cfg.data_lod_offset, e)
                raise TrainingError(f"training step failed at {seen} images (LOD {lod}): {error}") from None
            except tf.errors.OpError as e:
                raise TrainingError(f"training step failed at {seen} images (LOD {lod}): "
                                    f"{e.message.splitlines()[0]}") from None
            seen += batch
            steps += 1
            self.images_seen.assign(seen)
            if steps % cfg.summary_steps == 0 or seen >= cfg.total_images:
                values = {k: float(v) for k, v in terms.items()}
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    raise TrainingError(f"non-finite {', '.join(bad)} at {seen} images (LOD {lod}); "
                                        f"the last good checkpoint is {self.checkpointer.latest}")
                self.summaries.scalars(
                    dict(values, lod=lod, alpha=phase.alpha, learning_rate=phase.learning_rate,
                         images_per_second=rate, kimg=seen / 1000), seen)
            now = time.time()
            if now - last_log >= cfg.log_seconds or seen >= cfg.total_images:
                rate = (seen - seen_at_rate) / max(now - t_rate, 1e-9)
                t_rate, seen_at_rate, last_log = now, seen, now
                eta = (cfg.total_images - seen) / max(rate, 1e-9)
                losses = " ".join(f"{k} {float(v):.4f}" for k, v in sorted(terms.items()))
                logging.info("kimg %.1f/%.1f lod %d alpha %.3f %s | %.1f img/s ETA %s", seen / 1000,
                             cfg.total_images / 1000, lod, phase.alpha, losses, rate, _hms(eta))
            if seen >= next_snapshot or seen >= cfg.total_images:
                self.snapshot(seen, lod, phase.alpha, fixed_reals)
                next_snapshot += cfg.snapshot_images
            if seen >= next_checkpoint or seen >= cfg.total_images:
                self.checkpointer.save(seen)
                next_checkpoint += cfg.checkpoint_images
        self.summaries.flush()
        self.checkpointer.close()
        return {k: float(v) for k, v in terms.items()}

    def snapshot(self, seen: int, lod: int, alpha: float, fixed_reals):
        grids = self.model.summary_images(self.grid_z, fixed_reals, lod, alpha)
        columns = {"reconstructions": int(fixed_reals.shape[0])}
        self.summaries.images(grids, seen, columns, png_tag=f"{seen // 1000:06d}kimg")
        self.summaries.flush()


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
