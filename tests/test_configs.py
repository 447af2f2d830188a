"""configs/*.cfg against the ALAE release's configs/*.yaml.

tests/fixtures/release/release_configs.json holds the settings the release's own code reads from
its yaml files (merged into its defaults.py; written by tests/fixtures/make_release_parity.py).
"""
from __future__ import annotations

import glob
import json
import os

import pytest

from alae_tf.schedule import Schedule
from helpers_data import flagfile_values

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, "tests", "fixtures", "release", "release_configs.json")) as _fh:
    RELEASE = json.load(_fh)


@pytest.mark.parametrize("name", sorted(RELEASE))
def test_config_mirrors_the_release(name):
    rel = RELEASE[name]
    f = flagfile_values(os.path.join(REPO, "configs", f"{name}.cfg"))
    assert f["model"] == "alae_style"
    for key in ("latent_size", "layer_count", "start_channels", "max_channels", "mapping_layers", "channels"):
        assert int(f[key]) == rel[key], key
    assert f["mirror"] == rel["mirror"]
    # The release's schedule in epochs of its DATASET.SIZE, ours in images; both fade in over the
    # first half of each LOD (its epochs_per_lod // 2 epochs).
    epoch = rel["epoch_images"]
    assert rel["epochs_per_lod"] % 2 == 0
    assert float(f["kimg_per_lod"]) * 1000 == pytest.approx(rel["epochs_per_lod"] * epoch, abs=1e-6)
    assert float(f["total_kimg"]) * 1000 == pytest.approx(rel["epochs"] * epoch, abs=1e-6)
    layers = rel["layer_count"]
    schedule = Schedule(layers, float(f["kimg_per_lod"]) * 1000, f["batch_sizes"].split(","),
                        f["learning_rates"].split(","))
    assert schedule.batch_sizes == rel["batch_1gpu"]
    assert schedule.learning_rates == pytest.approx(rel["learning_rates"])
    assert schedule.transition_images == pytest.approx(rel["epochs_per_lod"] // 2 * epoch)


def test_defaults_are_the_release_defaults():
    from absl import flags

    from alae_tf import train  # noqa: F401  (defines the flags)
    from alae_tf.models.alae import ALAEConfig
    from alae_tf.models.base import make_adam

    rel = RELEASE["ffhq"]
    f = flags.FLAGS
    assert f["style_mixing_prob"].default == rel["style_mixing_prob"]
    assert f["truncation_psi"].default == rel["truncation_psi"]
    assert f["truncation_cutoff"].default == rel["truncation_cutoff"]
    assert ALAEConfig().w_avg_decay == rel["w_avg_decay"]
    adam = make_adam(0.001, mixed_precision=False)
    assert [adam.beta_1, adam.beta_2] == rel["adam_betas"]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.cfg"))),
                         ids=os.path.basename)
def test_every_config_parses(path, monkeypatch):
    from alae_tf import train

    monkeypatch.chdir(REPO)  # nested --flagfile paths are relative to the repository root
    train.check_flagfiles([f"--flagfile={path}"])
    train.FLAGS.unparse_flags()
    try:
        train.FLAGS(["train", f"--flagfile={path}"])  # unknown flags and bad values raise here
        assert train.FLAGS.output_dir.startswith("runs/")
    finally:
        train.FLAGS.unparse_flags()
