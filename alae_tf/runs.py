"""Run directories: the model a run trained, rebuilt from its model.json and a checkpoint."""
from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from alae_tf.models.alae import ALAE, ALAEConfig

MODEL_FILE = "model.json"


def save_config(run_dir: str, config: ALAEConfig):
    """Writes the model's configuration into the run directory (atomically)."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, MODEL_FILE)
    with open(path + ".tmp", "w") as fh:
        json.dump(dataclasses.asdict(config), fh, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def load_config(run_dir: str) -> ALAEConfig:
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{run_dir} is not a run directory of alae_tf.train (no {MODEL_FILE})")
    with open(path) as fh:
        values = json.load(fh)
    known = {f.name for f in dataclasses.fields(ALAEConfig)}
    values = {k: v for k, v in values.items() if k in known}
    values["mlp_hidden"] = tuple(values.get("mlp_hidden", (1024, 1024)))
    return ALAEConfig(**values)


def load_run(run_dir: str, checkpoint: str | None = None) -> ALAE:
    """The trained ALAE of ``run_dir`` (float32, no XLA) at ``checkpoint`` or the latest one."""
    config = dataclasses.replace(load_config(run_dir), jit=False, mixed_precision=False)
    path = checkpoint or tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if not path:
        raise ValueError(f"no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    model = ALAE(config)
    try:
        tf.train.Checkpoint(**model.checkpoint_items()).restore(path).expect_partial()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
        raise ValueError(f"cannot restore {path}: {str(e).splitlines()[0]}") from None
    return model
