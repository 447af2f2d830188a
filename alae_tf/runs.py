"""Run directories: the model a run trained, rebuilt from its model.json and a checkpoint."""
from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from alae_tf.models import MODELS

MODEL_FILE = "model.json"


def save_config(run_dir: str, config):
    """Writes the model's configuration into the run directory (atomically)."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, MODEL_FILE)
    with open(path + ".tmp", "w") as fh:
        json.dump(dataclasses.asdict(config), fh, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def load_config(run_dir: str):
    """The config dataclass of ``run_dir``'s model.json; its "model" field selects the class."""
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{run_dir} is not a run directory of alae_tf.train (no {MODEL_FILE})")
    with open(path) as fh:
        values = json.load(fh)
    name = values.get("model", "alae_style")
    if name not in MODELS:
        raise ValueError(f"{path}: unknown model {name!r} (known: {', '.join(MODELS)})")
    config_cls = MODELS[name][1]
    known = {f.name for f in dataclasses.fields(config_cls)}
    # JSON has no tuples: lists go back to the tuples the dataclasses hold.
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
    return config_cls(**values)


def load_run(run_dir: str, checkpoint: str | None = None):
    """The trained model of ``run_dir`` (float32, no XLA) at ``checkpoint`` or the latest one."""
    config = dataclasses.replace(load_config(run_dir), jit=False, mixed_precision=False)
    path = checkpoint or tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if not path:
        raise ValueError(f"no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    model = MODELS[config.model][0](config)
    try:
        tf.train.Checkpoint(**model.checkpoint_items()).restore(path).expect_partial()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
        raise ValueError(f"cannot restore {path}: {str(e).splitlines()[0]}") from None
    return model
