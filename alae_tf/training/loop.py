"""The strategy-agnostic training loop.

The loop knows a model only through alae_tf.models.base.Model's interface. It owns the
strategy, the data, the schedule, checkpoints, summaries and progress.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from alae_tf import data as data_lib
from alae_tf.images import to_float
from alae_tf.schedule import Schedule
from alae_tf.training.checkpoints import Checkpointer
from alae_tf.training.strategy import is_chief, num_workers
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
    mirror: bool = False  # the reader flips each real with p = 1/2
    data_memory_bytes: int = data_lib.SHUFFLE_BYTES  # see data.make_dataset's shuffle_bytes
    seed: int = 0
    grid_size: int = 36  # samples in the snapshot grids (6 x 6)
    nan_policy: str = "stop"  # stop | rollback
    max_rollbacks: int = 3
    time_limit_seconds: float = 0.0  # > 0: stop (grids, checkpoint) after this much training in this process
    deterministic: bool = False  # data order reproduced exactly on resume (skips consumed batches)
    skip_corrupt_records: bool = False
    handle_signals: bool = True  # SIGTERM / SIGINT: checkpoint, then Interrupted

    def __post_init__(self):
        if self.nan_policy not in ("stop", "rollback"):
            raise ValueError(f"--nan_policy must be stop or rollback, got {self.nan_policy!r}")
        if self.max_rollbacks < 0:
            raise ValueError(f"--max_rollbacks must be >= 0, got {self.max_rollbacks}")


class TrainingError(RuntimeError):
    """A failure during training that the user can act on (message says what and where)."""


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; ``signum`` is the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def check_batches(schedule: Schedule, replicas: int):
    """Every LOD's global batch must split evenly across the replicas."""
    for lod, batch in enumerate(schedule.batch_sizes):
        if batch % replicas:
            raise ValueError(
                f"--batch_sizes: the batch of LOD {lod} ({batch}) does not divide across "
                f"{replicas} replicas; use a multiple of {replicas}"
            )


def progress_variables() -> dict[str, tf.Variable]:
    """The loop's counters that a checkpoint holds beside the model's state, by checkpoint name.

    Create them in the strategy's scope. alae_tf.port writes them too, so that a ported run
    resumes like one trained here.
    """
    return {
        "images_seen": tf.Variable(0, dtype=tf.int64, trainable=False, name="images_seen"),
        # The LOD the optimizer state belongs to: a resume at another LOD resets it.
        "lod": tf.Variable(-1, dtype=tf.int64, trainable=False, name="lod"),
        # Images seen when the current LOD's data stream began (--deterministic resumes it).
        "data_start": tf.Variable(0, dtype=tf.int64, trainable=False, name="data_start"),
        "lr_scale": tf.Variable(1.0, dtype=tf.float64, trainable=False, name="lr_scale"),
        "rollbacks": tf.Variable(0, dtype=tf.int64, trainable=False, name="rollbacks"),
    }


class Trainer:
    """Runs a model under a strategy from images seen = 0 (or the last checkpoint) to the end."""

    def __init__(self, model_fn: Callable[[], object], schedule: Schedule,
                 strategy: tf.distribute.Strategy, config: LoopConfig):
        self.schedule, self.strategy, self.config = schedule, strategy, config
        check_batches(schedule, strategy.num_replicas_in_sync)
        self.chief = is_chief(strategy)
        self.workers = num_workers(strategy)
        with strategy.scope():
            self.model = model_fn()
            progress = progress_variables()
            # A model that trains in stages: the stage the optimizer state belongs to (a resume in
            # another stage resets it). Only such a model's checkpoints hold it.
            self.stages = self.model.stage_names()
            if len(self.stages) > 1:
                progress["stage"] = tf.Variable(-1, dtype=tf.int64, trainable=False, name="stage")
        self.state_stage = progress.get("stage")
        self.images_seen, self.state_lod = progress["images_seen"], progress["lod"]
        self.data_start, self.lr_scale, self.rollbacks = (
            progress["data_start"], progress["lr_scale"], progress["rollbacks"])
        # This worker's stop requests (a signal, the time limit); summed over workers every step so
        # that all stop at the same step.
        self._stop_request = tf.Variable([0.0, 0.0], trainable=False, name="stop_request")
        items = dict(self.model.checkpoint_items(), **progress)
        self.checkpointer = Checkpointer(config.output_dir, items, self.chief, config.keep_checkpoints)
        self.summaries = Summaries(config.output_dir, self.chief)
        self._steps: dict = {}
        self._signal: int | None = None
        self._limits: dict | None = None  # per-file record limits once corrupt records are skipped
        self.skipped_records = 0
        rng = np.random.default_rng(config.seed)
        self.grid_z = tf.constant(rng.standard_normal((config.grid_size, self.model.config.latent_size)),
                                  tf.float32)

    # ------------------------------------------------------------------ data and steps
    def _dataset(self, lod: int, global_batch: int, seen: int):
        cfg = self.config
        resolution = self.model.resolution(lod)
        info = data_lib.describe(cfg.data_dir, check_sizes=not cfg.skip_corrupt_records)
        # --deterministic: the stream is a function of where this LOD's data began, and a resume
        # skips what was consumed; otherwise a fresh stream seeded by the images seen.
        start = int(self.data_start.numpy()) if cfg.deterministic else seen
        skip = (seen - start) // global_batch if cfg.deterministic else 0
        limits = self._limits

        def dataset_fn(ctx: tf.distribute.InputContext):
            ds = data_lib.make_dataset(
                cfg.data_dir, resolution, ctx.get_per_replica_batch_size(global_batch),
                mirror=cfg.mirror, seed=cfg.seed + start, input_context=ctx, info=info,
                limits=limits, shuffle_bytes=cfg.data_memory_bytes)
            return ds.skip(skip) if skip else ds

        if skip:
            logging.info("--deterministic: skipping %d consumed batches of this LOD's data", skip)
        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

    def _fixed_reals(self, lod: int) -> tf.Tensor:
        ds = data_lib.make_dataset(self.config.data_dir, self.model.resolution(lod),
                                   min(16, self.config.grid_size), shuffle=False, repeat=False,
                                   info=data_lib.describe(self.config.data_dir,
                                                          check_sizes=not self.config.skip_corrupt_records),
                                   limits=self._limits)
        return to_float(next(iter(ds)))

    def _step_fn(self, lod: int, global_batch: int):
        key = (lod, global_batch, self.model.stage)  # the model's stage is fixed when a step traces
        if key not in self._steps:
            model, strategy, stop_request = self.model, self.strategy, self._stop_request

            def replica_fn(pixels, alpha):
                reals = to_float(pixels)  # uint8 crossed to the device; floats made here
                terms = model.replica_step(reals, alpha, lod=lod, global_batch=global_batch)
                return terms, tf.identity(stop_request)

            @tf.function
            def step(iterator, alpha):
                reals = next(iterator)
                terms, stop = strategy.run(replica_fn, args=(reals, alpha))
                model.after_step(global_batch)
                reduced = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                           for k, v in terms.items()}
                stop = strategy.reduce(tf.distribute.ReduceOp.SUM, stop, axis=None)
                return reduced, stop

            self._steps[key] = step
        return self._steps[key]

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame):
        self._signal = signum
        logging.warning("received %s: saving a checkpoint at the end of this step (send it again "
                        "to quit at once)", signal.Signals(signum).name)
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)

    def _install_signal_handlers(self) -> dict:
        if not self.config.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        """Trains to ``total_images``; returns the last reduced loss terms.

        Raises Interrupted after saving a checkpoint when SIGTERM / SIGINT arrives (on any
        worker), TrainingError on a bad record or non-finite loss (unless rolled back).
        """
        previous = self._install_signal_handlers()
        try:
            return self._run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _run(self) -> dict:
        cfg, schedule = self.config, self.schedule
        restored = self.checkpointer.restore()
        seen = int(self.images_seen.numpy())
        if self.workers > 1:
            self._check_workers_agree(seen)
        if restored:
            logging.info("resuming at %.1f kimg", seen / 1000)
        if seen >= cfg.total_images:
            logging.info("already trained %d of %d images: nothing to do", seen, cfg.total_images)
            return {}
        if not restored and cfg.nan_policy == "rollback":
            self.checkpointer.save(0)  # something to roll back to
        alpha_var = tf.Variable(1.0, trainable=False, name="alpha")
        lod, stage, batch, iterator, step, fixed_reals = None, None, None, None, None, None
        terms: dict = {}
        next_snapshot = (seen // cfg.snapshot_images + 1) * cfg.snapshot_images
        next_checkpoint = (seen // cfg.checkpoint_images + 1) * cfg.checkpoint_images
        last_log = t_rate = t_start = time.time()
        seen_at_rate = seen
        rate = 0.0
        steps = 0
        while seen < cfg.total_images:
            phase = schedule.phase(seen)
            new_stage = self.model.stage_at(seen)
            if new_stage != stage:
                self._begin_stage(new_stage, seen)
                if lod is not None and phase.lod == lod:
                    step = self._step_fn(lod, batch)
                stage = new_stage
            if phase.lod != lod:
                lod, batch = phase.lod, phase.batch_size
                if int(self.state_lod.numpy()) != lod:
                    if int(self.state_lod.numpy()) >= 0:
                        logging.info("LOD %d -> %d: resetting optimizer state", int(self.state_lod.numpy()), lod)
                    self.model.reset_optimizers()
                    self.state_lod.assign(lod)
                    self.data_start.assign(seen)
                learning_rate = phase.learning_rate * float(self.lr_scale.numpy())
                self.model.set_learning_rate(learning_rate)
                iterator = self._dataset(lod, batch, seen)
                step = self._step_fn(lod, batch)
                fixed_reals = self._fixed_reals(lod)
                res = self.model.resolution(lod)
                logging.info("LOD %d (%dx%d): batch %d, learning rate %g", lod, res, res, batch, learning_rate)
            if self._signal is not None:
                self._stop_request[0].assign(1.0)
            if cfg.time_limit_seconds > 0 and time.time() - t_start >= cfg.time_limit_seconds:
                self._stop_request[1].assign(1.0)
            alpha_var.assign(phase.alpha)
            try:
                terms, stop = step(iterator, alpha_var)
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
                # A bad record: name the file and record (DataLossError itself names neither).
                if cfg.skip_corrupt_records and self._skip_corrupt(lod):
                    iterator = self._dataset(lod, batch, seen)
                    continue
                error = data_lib.diagnose(cfg.data_dir, self.model.resolution(lod), e)
                raise TrainingError(f"training step failed at {seen} images (LOD {lod}): {error}") from None
            except _LOST_WORKER as e:
                if self.workers == 1:
                    raise TrainingError(f"training step failed at {seen} images (LOD {lod}): "
                                        f"{_first_line(e.message)}") from None
                raise TrainingError(
                    f"lost contact with another worker at {seen} images ({_first_line(e.message)}); "
                    f"stopped. Start every worker again with the same command to resume from "
                    f"{self.checkpointer.latest}") from None
            except tf.errors.OpError as e:
                raise TrainingError(f"training step failed at {seen} images (LOD {lod}): "
                                    f"{_first_line(e.message)}") from None
            values = {k: float(v) for k, v in terms.items()}
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if bad:
                where = f"step {int(self.model.step.numpy())} ({seen} images, LOD {lod})"  # the bad one included
                if cfg.nan_policy == "rollback" and self._rollback(where, bad):
                    seen, lod, stage = int(self.images_seen.numpy()), None, None
                    next_snapshot = (seen // cfg.snapshot_images + 1) * cfg.snapshot_images
                    next_checkpoint = (seen // cfg.checkpoint_images + 1) * cfg.checkpoint_images
                    continue
                extra = (f" after {int(self.rollbacks.numpy())} rollback(s)" if cfg.nan_policy == "rollback"
                         else "")
                raise TrainingError(f"non-finite {', '.join(bad)} at {where}{extra}; training stopped, "
                                    f"the last good checkpoint is {self.checkpointer.latest}")
            seen += batch
            steps += 1
            self.images_seen.assign(seen)
            stop = stop.numpy()
            if stop[0] > 0:
                self._interrupt(seen)
            last = seen >= cfg.total_images or stop[1] > 0
            if steps % cfg.summary_steps == 0 or last:
                extra = {"stage": stage + 1} if self.state_stage is not None else {}
                self.summaries.scalars(
                    dict(values, lod=lod, alpha=phase.alpha, learning_rate=phase.learning_rate * float(self.lr_scale.numpy()),
                         images_per_second=rate, kimg=seen / 1000, skipped_records=self.skipped_records,
                         **extra), seen)
            now = time.time()
            if now - last_log >= cfg.log_seconds or last:
                rate = (seen - seen_at_rate) / max(now - t_rate, 1e-9)
                t_rate, seen_at_rate, last_log = now, seen, now
                eta = (cfg.total_images - seen) / max(rate, 1e-9)
                if cfg.time_limit_seconds > 0:
                    eta = max(0.0, min(eta, cfg.time_limit_seconds - (now - t_start)))
                losses = " ".join(f"{k} {v:.4f}" for k, v in sorted(values.items()))
                if self.state_stage is not None:
                    losses = f"stage {stage + 1}/{len(self.stages)} ({self.stages[stage]}) {losses}"
                logging.info("kimg %.1f/%.1f lod %d alpha %.3f %s | %.1f img/s ETA %s", seen / 1000,
                             cfg.total_images / 1000, lod, phase.alpha, losses, rate, _hms(eta))
            if seen >= next_snapshot or last:
                self.snapshot(seen, lod, phase.alpha, fixed_reals)
                next_snapshot += cfg.snapshot_images
            if seen >= next_checkpoint or last:
                self.checkpointer.save(seen)
                next_checkpoint += cfg.checkpoint_images
            if stop[1] > 0:
                logging.info("time limit: stopped after %s of training at %.1f of %.1f kimg; the same "
                             "command continues", _hms(time.time() - t_start), seen / 1000, cfg.total_images / 1000)
                break
        if self.skipped_records:
            logging.warning("skipped %d corrupt record(s) of %s (--skip_corrupt_records)",
                            self.skipped_records, cfg.data_dir)
        self.summaries.flush()
        self.checkpointer.close()
        return {k: float(v) for k, v in terms.items()}

    def _begin_stage(self, stage: int, seen: int):
        """Tells the model its stage; a stage other than the optimizer state's resets that state."""
        self.model.set_stage(stage)
        if self.state_stage is None:
            return
        held = int(self.state_stage.numpy())
        if held != stage:
            if held >= 0:
                logging.info("stage %d -> %d: resetting optimizer state", held + 1, stage + 1)
            self.model.reset_optimizers()
            self.state_stage.assign(stage)
        logging.info("stage %d/%d (%s) at %.1f kimg", stage + 1, len(self.stages), self.stages[stage], seen / 1000)

    def _interrupt(self, seen: int):
        path = self.checkpointer.save(seen)
        self.summaries.flush()
        self.checkpointer.close()
        if self._signal is not None:
            name = signal.Signals(self._signal).name
            signum = self._signal
        else:
            name, signum = "a stop request from another worker", signal.SIGTERM
        where = path if self.chief else "the chief's run directory"
        raise Interrupted(f"stopped by {name} at {seen / 1000:.3f} kimg; checkpoint saved in {where}; "
                          f"run the same command again to resume", signum)

    def _check_workers_agree(self, seen: int):
        """All workers must resume from the same checkpoint (they restore the chief's)."""
        strategy, counter = self.strategy, self.images_seen

        @tf.function
        def total():
            local = strategy.run(lambda: tf.cast(tf.identity(counter), tf.float64))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, local, axis=None)

        expected = float(seen) * self.strategy.num_replicas_in_sync
        if float(total()) != expected:
            raise TrainingError(
                f"the workers restored different checkpoints (this one is at {seen} images); every "
                f"worker restores from {self.checkpointer.chief_directory}: --output_dir must be the "
                f"same path on storage all workers can read")

    def _rollback(self, where: str, bad: list[str]) -> bool:
        """Restores the last checkpoint with the learning rate halved; False when out of rollbacks."""
        done = int(self.rollbacks.numpy())
        latest = self.checkpointer.latest
        if done >= self.config.max_rollbacks or latest is None:
            return False
        scale = float(self.lr_scale.numpy()) * 0.5
        self.checkpointer.restore(latest)
        self.lr_scale.assign(scale)
        self.rollbacks.assign(done + 1)
        logging.warning("non-finite %s at %s: rolled back to %s (%.1f kimg) with the learning rate "
                        "x%g (rollback %d of %d)", ", ".join(bad), where, latest,
                        int(self.images_seen.numpy()) / 1000, scale, done + 1, self.config.max_rollbacks)
        return True

    def _skip_corrupt(self, lod: int) -> bool:
        """Limits the reader to the records before each file's first bad one; False if none found."""
        cfg = self.config
        limits, lost, notes = data_lib.usable_records(cfg.data_dir, self.model.resolution(lod))
        if not limits or limits == self._limits:
            return False
        self._limits, self.skipped_records = limits, lost
        for note in notes:
            logging.warning("--skip_corrupt_records: %s", note)
        return True

    def snapshot(self, seen: int, lod: int, alpha: float, fixed_reals):
        grids = self.model.summary_images(self.grid_z, fixed_reals, lod, alpha)
        columns = {"reconstructions": int(fixed_reals.shape[0])}
        written = self.summaries.images(grids, seen, columns, png_tag=f"{seen // 1000:06d}kimg")
        self.summaries.flush()
        if written:
            logging.info("grids: %s", ", ".join(written))


_LOST_WORKER = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError)


def _first_line(message: str) -> str:
    """The first line of a TF error message that says something ("Graph execution error:" doesn't)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Graph execution error", "Detected at node", "File ",
                                                        "Additional GRPC", ":UNKNOWN", "[["))]
    return (useful or lines or ["(no message)"])[0][:300]


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
