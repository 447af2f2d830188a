"""Checkpoints: tf.train.CheckpointManager, chief-only on multi-worker runs."""
from __future__ import annotations

import os
import shutil
import tempfile

import tensorflow as tf
from absl import logging


class Checkpointer:
    """Saves and restores a tf.train.Checkpoint in ``<run_dir>/checkpoints``.

    Every worker takes part in saving (the variables may need collectives); only the chief's
    copy is kept. Every worker restores from the chief's directory (on multi-worker runs the
    run directory must be on storage all workers can read). A checkpoint counts once its index
    file names it (written atomically after the data), so one cut short by a crash is never
    restored.
    """

    def __init__(self, run_dir: str, items: dict, chief: bool = True, keep: int = 3):
        self.checkpoint = tf.train.Checkpoint(**items)
        self.chief = chief
        directory = self.chief_directory = os.path.join(run_dir, "checkpoints")
        if not chief:
            directory = tempfile.mkdtemp(prefix="alae_tf_worker_ckpt_")
        self.directory = directory
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    @property
    def latest(self) -> str | None:
        """The chief's latest complete checkpoint."""
        if self.chief:
            return self.manager.latest_checkpoint
        return tf.train.latest_checkpoint(self.chief_directory)

    def restore(self, path: str | None = None) -> str | None:
        """Restores ``path`` or the latest checkpoint; returns what was restored (None: fresh)."""
        path = path or self.latest
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
            logging.info("restored %s", path)
        return path

    def save(self, number: int) -> str:
        path = self.manager.save(checkpoint_number=number)
        if self.chief:
            logging.info("saved %s", path)
        return path

    def close(self):
        if not self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)
