"""Distribution strategies: auto, mirrored, multiworker, onedevice."""
from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import flags, logging

flags.DEFINE_enum("strategy", "auto", ["auto", "mirrored", "multiworker", "onedevice"],
                  "auto: MirroredStrategy over the visible GPUs (several) or one device; "
                  "multiworker: MultiWorkerMirroredStrategy from TF_CONFIG.")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called ``name``; a one-line ValueError when it cannot be built.

    Call it before anything else touches TensorFlow's runtime: MultiWorkerMirroredStrategy must
    configure collective ops at program start-up.
    """
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multiworker needs the TF_CONFIG environment variable "
                             "(cluster and task); see docs/distributed.md")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        strategy = tf.distribute.MirroredStrategy()
    elif name in ("auto", "onedevice"):
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    else:
        raise ValueError(f"unknown --strategy={name!r}")
    logging.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes taking part in the training (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(job, [])) for job in ("chief", "worker")))
