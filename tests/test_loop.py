"""The training loop: schedule in images seen, optimizer resets, resume, the CLI and its errors."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alae_tf import data
from alae_tf.images import to_float
from alae_tf.models.alae import ALAE, ALAEConfig
from alae_tf.schedule import Schedule
from alae_tf.training.loop import LoopConfig, Trainer
from tfrecords_tools.writer import convert

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(model="alae_style", resolution=16, channels=1, latent_size=8, layer_count=3,
            start_channels=8, max_channels=16, mapping_layers=2)
PER_LOD, BATCH = 64, 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    convert(source="mnist5k", output_dir=str(out), name="digits", resolution=16, channels=1,
            max_images=256, parts=2)
    return str(out / "digits")


class RecordingTrainer(Trainer):
    """Records (images seen, lod, alpha) of every step it runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.record = []

    def _step_fn(self, lod, global_batch):
        inner = super()._step_fn(lod, global_batch)

        def step(iterator, alpha):
            self.record.append((int(self.images_seen.numpy()), lod, float(alpha.numpy())))
            return inner(iterator, alpha)

        return step


def _trainer(dataset, run_dir, total, checkpoint_images=10**9):
    schedule = Schedule(3, PER_LOD, [BATCH], [0.002])
    loop = LoopConfig(output_dir=str(run_dir), data_dir=dataset, total_images=total,
                      snapshot_images=10**9, checkpoint_images=checkpoint_images, log_seconds=1e9,
                      summary_steps=4, grid_size=4)
    return RecordingTrainer(lambda: ALAE(ALAEConfig(**TINY)), schedule, tf.distribute.get_strategy(), loop)


def _expected(seen):
    """The release's schedule, written out: lod = seen // per_lod, cosine fade over its first half."""
    lod = min(2, seen // PER_LOD)
    into = seen - lod * PER_LOD
    alpha = 1.0
    if lod > 0 and into < PER_LOD / 2:
        alpha = (1 - math.cos(math.pi * into / (PER_LOD / 2))) / 2
    return lod, alpha


def test_progressive_run_follows_schedule_and_resets_optimizers(dataset, tmp_path):
    trainer = _trainer(dataset, tmp_path / "run", total=3 * PER_LOD)
    terms = trainer.run()
    assert all(math.isfinite(v) for v in terms.values())
    assert [r[0] for r in trainer.record] == list(range(0, 3 * PER_LOD, BATCH))
    for seen, lod, alpha in trainer.record:
        exp_lod, exp_alpha = _expected(seen)
        assert lod == exp_lod and alpha == pytest.approx(exp_alpha, abs=1e-6), seen
    # Adam was reset when LOD 2 began: its counters hold only LOD 2's steps.
    steps_at_top = PER_LOD // BATCH
    model = trainer.model
    assert int(model.opt_d.iterations.numpy()) == steps_at_top
    assert int(model.opt_e.iterations.numpy()) == 2 * steps_at_top  # D step and latent AE step
    assert int(model.opt_fg.iterations.numpy()) == 2 * steps_at_top  # G step and latent AE step
    assert int(trainer.state_lod.numpy()) == 2
    assert int(model.step.numpy()) == 3 * PER_LOD // BATCH
    run = tmp_path / "run"
    assert (run / "checkpoints" / "checkpoint").exists()
    assert any(p.name.startswith("events") for p in (run / "tensorboard").iterdir())
    pngs = sorted(p.name for p in (run / "images").iterdir())
    assert pngs == ["reconstructions_000000kimg.png", "samples_000000kimg.png"]


def test_resume_continues_schedule(dataset, tmp_path):
    run = tmp_path / "run"
    first = _trainer(dataset, run, total=PER_LOD + 4 * BATCH, checkpoint_images=2 * BATCH)
    first.run()
    saved = [v.numpy() for v in first.model.nets.variables + first.model.ema.variables]
    iterations = int(first.model.opt_d.iterations.numpy())
    second = _trainer(dataset, run, total=2 * PER_LOD)
    second.checkpointer.restore()
    restored = [v.numpy() for v in second.model.nets.variables + second.model.ema.variables]
    for a, b in zip(saved, restored):
        np.testing.assert_array_equal(a, b)
    assert int(second.model.opt_d.iterations.numpy()) == iterations
    second.run()
    seen = [r[0] for r in second.record]
    assert seen == list(range(PER_LOD + 4 * BATCH, 2 * PER_LOD, BATCH))
    for s, lod, alpha in second.record:
        exp_lod, exp_alpha = _expected(s)
        assert lod == exp_lod and alpha == pytest.approx(exp_alpha, abs=1e-6)
    # Same LOD as the checkpoint: the optimizer state went on, it was not reset.
    assert int(second.model.opt_d.iterations.numpy()) == iterations + len(seen)
    assert int(second.model.step.numpy()) == 2 * PER_LOD // BATCH


@pytest.mark.parametrize("mirror", [False, True])
def test_mirror_flips_a_random_half_of_the_reals(dataset, tmp_path, mirror):
    """--mirror: the reader's batches reach the model with a random half mirrored, drawn anew
    every step (the reader flips, with the loop's seed)."""
    seen_reals = []

    def model_fn():
        model = ALAE(ALAEConfig(**TINY))
        model.last_reals = tf.Variable(tf.zeros([BATCH, 4, 4, 1]), trainable=False)
        inner = model.replica_step

        def replica_step(reals, alpha, lod, global_batch):
            model.last_reals.assign(reals)
            return inner(reals, alpha, lod=lod, global_batch=global_batch)

        model.replica_step = replica_step
        return model

    steps = 6
    loop = LoopConfig(output_dir=str(tmp_path / "run"), data_dir=dataset, total_images=steps * BATCH,
                      snapshot_images=10**9, checkpoint_images=10**9, log_seconds=1e9, grid_size=4,
                      mirror=mirror)

    class Capturing(Trainer):
        def _step_fn(self, lod, global_batch):
            inner = super()._step_fn(lod, global_batch)

            def step(iterator, alpha):
                out = inner(iterator, alpha)
                seen_reals.append(self.model.last_reals.numpy())
                return out
            return step

    Capturing(model_fn, Schedule(3, PER_LOD, [BATCH], [0.002]), tf.distribute.get_strategy(), loop).run()
    reader = iter(data.make_dataset(dataset, 4, BATCH, seed=0,
                                    input_context=tf.distribute.InputContext()))
    flips = []
    for got in seen_reals:
        want = to_float(next(reader).numpy())
        for g, w in zip(got, want):  # (x / 127.5 - 1 compiled may differ in the last bit)
            flips.append(not np.allclose(g, w, atol=1e-6))
            np.testing.assert_allclose(g, w[:, ::-1] if flips[-1] else w, atol=1e-6)
    assert len(flips) == steps * BATCH
    if mirror:  # MNIST digits at 4x4 are not symmetric: about half differ
        assert 0.25 < np.mean(flips) < 0.75
    else:
        assert not any(flips)


def test_batch_must_divide_across_replicas(dataset, tmp_path, two_replicas):
    schedule = Schedule(3, PER_LOD, [8, 6, 3], [0.002])
    loop = LoopConfig(output_dir=str(tmp_path), data_dir=dataset, total_images=10)
    with pytest.raises(ValueError, match=r"^--batch_sizes: the batch of LOD 2 \(3\) does not divide across "
                                         r"2 replicas; use a multiple of 2$"):
        Trainer(lambda: ALAE(ALAEConfig(**TINY)), schedule, two_replicas, loop)


def _train_cli(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "alae_tf.train", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_cli_trains_mlp_and_resumes(dataset, tmp_path):
    run = tmp_path / "run"
    args = ["--model=alae_mlp", f"--data_dir={dataset}", f"--output_dir={run}", "--channels=1",
            "--latent_size=8", "--mapping_layers=2", "--batch_sizes=16", "--snapshot_kimg=0.064",
            "--checkpoint_kimg=0.064"]
    result = _train_cli(*args, "--total_kimg=0.128")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--latent_size=8" in (run / "flags.txt").read_text()
    assert "samples_000000kimg.png" in os.listdir(run / "images")
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-128")
    result = _train_cli(*args, "--total_kimg=0.192")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming at 0.1 kimg" in result.stderr
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-192")
    # The run rebuilds from its model.json and checkpoint: EMA weights as saved.
    from alae_tf.runs import load_run

    model = load_run(str(run))
    assert model.config.latent_size == 8 and model.config.model == "alae_mlp"
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    saved = reader.get_tensor("ema_G/weights_by_name/dense0..kernel/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(model.ema.G.dense[0].kernel.numpy(), saved)
    assert model.reconstruct(tf.zeros([2, 16, 16, 1])).shape == (2, 16, 16, 1)


@pytest.mark.parametrize("extra, message", [
    (["--channels=3"], r"^error: --channels=3 but --data_dir=\S+ has 1-channel images$"),
    (["--layer_count=4"], r"^error: --data_dir=\S+ lacks level\(s\) r05 \(has r02, r03, r04\) needed for "
                          r"32x32 training$"),
    (["--batch_sizes=8,8,8,8"], r"^error: --batch_sizes has 4 values but the model has only 3 LODs"),
    (["--batch_sizes=8,x"], r"^error: --batch_sizes / --learning_rates must be comma-separated numbers"),
])
def test_cli_errors_are_one_line(dataset, tmp_path, extra, message):
    result = _train_cli("--model=alae_style", f"--data_dir={dataset}", f"--output_dir={tmp_path}",
                        "--channels=1", "--layer_count=3", "--latent_size=8", *extra)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert __import__("re").match(message, last), last


def test_cli_missing_data_dir(tmp_path):
    result = _train_cli(f"--data_dir={tmp_path / 'nowhere'}", f"--output_dir={tmp_path}/run")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "nowhere" in result.stderr.strip().splitlines()[-1]


def test_corrupt_record_during_training_names_the_file(dataset, tmp_path):
    import shutil

    from alae_tf.training.loop import TrainingError

    folder = tmp_path / "data"
    shutil.copytree(os.path.dirname(dataset), folder)
    bad = folder / "digits-r04.tfrecords.000"
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # flips a byte inside a record's data: its CRC no longer matches
    bad.write_bytes(bytes(raw))
    schedule = Schedule(3, 0, [BATCH], [0.002])
    loop = LoopConfig(output_dir=str(tmp_path / "run"), data_dir=str(folder / "digits"), total_images=10**6,
                      snapshot_images=10**9, checkpoint_images=10**9, log_seconds=1e9)
    trainer = Trainer(lambda: ALAE(ALAEConfig(**TINY)), schedule, tf.distribute.get_strategy(), loop)
    with pytest.raises(TrainingError, match=r"digits-r04\.tfrecords\.000"):
        trainer.run()
