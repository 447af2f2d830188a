"""StyleALAE against the ALAE release, number for number, through alae_tf.port.

The fixtures in tests/fixtures/release were written by the release's own code
(tests/fixtures/make_release_parity.py, torch, in float64 from float32 weights and inputs): its
checkpoints of two small configurations with random weights, and what its F, G, E, D and losses
computed from them, with the draws they made (latents, style-mixing cutoffs, noise maps) and the
parameter gradients of each loss. Here the checkpoints are ported with alae_tf.port and every
output, loss and gradient must agree.

Tolerance: the largest absolute difference over a tensor, divided by the largest absolute value of
the release's tensor, at most 1e-4. Outputs and losses are compared as users run the model, in
float32 (seen: at most 4e-6). Gradients are compared with our networks computing in float64 (seen:
at most 4e-5): in float32 both implementations carry rounding noise that cancellation amplifies in
some tensors (a bias in front of an instance norm gets an analytically small gradient from large
terms): our float32 gradients of the 128 px fixture are off by up to 4e-3 of the network's largest
gradient, and torch's own float32 gradients of the same computation differed from its float64 ones
by up to 4% on the machine that wrote the fixtures. A difference of architecture or arithmetic (a
slope, an epsilon, a gain, a flipped kernel, a mixing slot) shows as 1e-3 or far more.
"""
from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import tensorflow as tf

from alae_tf import port, pth
from helpers_data import error_line, flagfile_values, run_cli

# ALAE_PARITY_FIXTURES: another folder written by make_release_parity.py (e.g. --only=celeba).
FIXTURES = os.environ.get("ALAE_PARITY_FIXTURES") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                   "fixtures", "release")
NAMES = tuple(sorted(n[:-len(".npz")] for n in os.listdir(FIXTURES) if n.endswith(".npz")))
OUTPUT_TOL = GRAD_TOL = 1e-4


def _config(name: str):
    from alae_tf.models.alae import ALAEConfig

    f = flagfile_values(os.path.join(FIXTURES, f"{name}.cfg"))
    layers = int(f["layer_count"])
    return ALAEConfig(model="alae_style", resolution=4 * 2 ** (layers - 1), channels=int(f["channels"]),
                      latent_size=int(f["latent_size"]), layer_count=layers, start_channels=int(f["start_channels"]),
                      max_channels=int(f["max_channels"]), mapping_layers=int(f["mapping_layers"]))


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """{name: run directory}: gray16 ported by the command line, rgb128 in process."""
    root = tmp_path_factory.mktemp("ported")
    out = {}
    for name in NAMES:
        run_dir = out[name] = root / name
        if name == NAMES[0]:
            proc = run_cli("alae_tf.port", f"--checkpoint={FIXTURES}/{name}.pth",
                           f"--flagfile={FIXTURES}/{name}.cfg", f"--output_dir={run_dir}")
            assert proc.returncode == 0, proc.stderr[-3000:]
            if name == "gray16":  # kimg_per_lod=0.1: LODs 0 and 1 take 100 images each, then LOD 2 fades in
                assert "placed at 0.25 kimg" in proc.stdout, proc.stdout
        else:
            port.port(os.path.join(FIXTURES, f"{name}.pth"), _config(name), str(run_dir), images_seen=0)
    return out


@pytest.fixture(scope="module")
def ported(run_dirs):
    """{name: (the ported model, the fixture's arrays)}."""
    from alae_tf.runs import load_run

    return {name: (load_run(str(run_dir)), dict(np.load(os.path.join(FIXTURES, f"{name}.npz"))))
            for name, run_dir in run_dirs.items()}


def _close(ours, ref, tol: float, what: str):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    scale = max(float(np.abs(ref).max()), 1e-12)
    err = float(np.abs(ours - ref).max()) / scale
    assert err <= tol, f"{what}: max abs error {err:.2e} of the scale {scale:.3g}"
    return err


def _images(pixels):
    return tf.cast(tf.constant(pixels), tf.float32) / 127.5 - 1.0


def _noise(fx: dict, prefix: str) -> list:
    maps, j = [], 0
    while f"{prefix}noise{j}" in fx:
        maps.append(tf.constant(fx[f"{prefix}noise{j}"].astype(np.float32)))
        j += 1
    return maps


@pytest.mark.parametrize("name", NAMES)
def test_networks_match_the_release(ported, name):
    model, fx = ported[name]
    n, e = model.nets, model.ema
    _close(n.F(fx["F/z"]), fx["F/w"], OUTPUT_TOL, "F")
    _close(n.D(fx["D/w"]), fx["D/logit"], OUTPUT_TOL, "D")
    _close(e.F(fx["F/z"]), fx["ema/F/w"], OUTPUT_TOL, "EMA F")
    _close(e.D(fx["D/w"]), fx["ema/D/logit"], OUTPUT_TOL, "EMA D")
    i = 0
    while f"G{i}/case" in fx:
        lod, blend, zero = fx[f"G{i}/case"]
        noise = False if zero else _noise(fx, f"G{i}/")
        image = n.G(tf.constant(fx[f"G{i}/styles"]), lod=int(lod), alpha=float(blend), noise=noise)
        _close(image, fx[f"G{i}/image"], OUTPUT_TOL, f"G at lod {int(lod)}, blend {blend}")
        i += 1
    assert i >= 2
    lod = int(fx["ema/G/case"][0])
    _close(e.G(tf.constant(fx["ema/G/styles"]), lod=lod, noise=False), fx["ema/G/image"], OUTPUT_TOL, "EMA G")
    i = 0
    while f"E{i}/case" in fx:
        lod, blend = fx[f"E{i}/case"]
        w = n.E(_images(fx[f"E{i}/pixels"]), lod=int(lod), alpha=float(blend))
        _close(w, fx[f"E{i}/w"], OUTPUT_TOL, f"E at lod {int(lod)}, blend {blend}")
        i += 1
    assert i >= 2
    _close(e.E(_images(fx["ema/E/pixels"])), fx["ema/E/w"], OUTPUT_TOL, "EMA E")
    np.testing.assert_array_equal(model.w_avg.numpy(), fx["checkpoint/w_avg"])


@pytest.fixture(scope="module")
def ported64(ported):
    """{name: (model, fixture arrays)}: the release's weights, converted and computing in float64.

    Straight from the checkpoint rather than through the ported run's float32 variables: those are
    the release's values divided by the equalized-lr constant and rounded to float32, within one
    float32 step of them, and in places the latent autoencoder's gradient is that sensitive (with
    random weights some features before an instance norm have a variance near its epsilon): the
    rounding alone moved gradients of the full CelebA architecture by up to 3e-3.
    """
    import keras

    from alae_tf.models.alae import ALAE

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_dtype_policy("float64")
    try:
        out = {}
        for name, (model, fx) in ported.items():
            wide = ALAE(model.config)
            models = port.read_release(os.path.join(FIXTURES, f"{name}.pth"))
            for entry in port.entries(wide.nets, wide.config):
                value = models[port.RELEASE_NAMES[entry.net]][entry.key].astype(np.float64)
                entry.variable.assign(entry.to_ours(value, np.float64))
            out[name] = (wide, fx)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_learning_rate_constants_match_the_release(ported, name):
    """Porting maps the run-time weights whatever the gains, so the gains and lr multipliers that
    drive training are checked on their own: our run-time scale of every weight and bias equals
    the constant the release's optimizer multiplies its step by."""
    model, fx = ported[name]
    checked = 0
    for entry in port.entries(model.nets, model.config):
        key = f"coef/{entry.source}"
        if key in fx:
            assert entry.scale == pytest.approx(float(fx[key]), rel=1e-6), entry.source
            checked += 1
        else:  # a plain parameter in the release: no equalized learning rate
            assert entry.scale == 1.0, entry.source
    assert checked > len(port.entries(model.nets, model.config)) // 2


def _gradients(model, name: str, fx: dict, key: str, step: str, grads: dict, nets: str, tol: float):
    """Our gradients (by variable) against the release's, for the variables of ``nets``;
    returns the relative errors."""
    errors = []
    for entry in port.entries(model.nets, model.config):
        if entry.net not in nets:
            continue
        ref_key = f"{key}/{step}/grad/{entry.source}"
        ours = grads.get(entry.variable.path)
        ours = np.zeros(entry.variable.shape) if ours is None else ours.numpy()
        # No gradient in torch: a layer of another LOD, outside the loss's graph.
        ref = entry.gradient_to_ours(fx[ref_key]) if ref_key in fx else np.zeros_like(ours)
        if not np.abs(ref).max():
            np.testing.assert_array_equal(ours, 0.0, err_msg=f"{step} step, {entry.source}")
            continue
        errors.append(_close(ours, ref, tol, f"{name} {step} step, gradient of {entry.source}"))
    assert len(errors) > len(port.entries(model.nets, model.config)) // 8, f"{step} step: few gradients compared"
    return errors


def _losses(model, name: str, fx: dict, key: str, dtype) -> dict:
    """{step: (loss, {variable path: gradient}, F(z))} of the three steps on the release's draws."""
    n = model.nets
    batch = int(fx["F/z"].shape[0])
    lod, blend = int(fx[f"{key}/case"][0]), float(fx[f"{key}/case"][1])
    reals = tf.cast(_images(fx[f"{key}/pixels"]), dtype)

    def arr(k):
        return tf.constant(fx[k], dtype)

    def noise(prefix):
        return [tf.cast(m, dtype) for m in _noise(fx, prefix)]

    def run(fn, variables):
        with tf.GradientTape() as tape:
            loss, w = fn()
        return loss, dict(zip([v.path for v in variables], tape.gradient(loss, variables))), w

    fakes, w_d = model.d_fakes(arr(f"{key}/d/z"), arr(f"{key}/d/z2"), int(fx[f"{key}/d/cutoff"]),
                               noise(f"{key}/d/"), lod, blend)
    return {
        "d": run(lambda: (model.d_loss(reals, fakes, lod, blend, batch)[0], w_d),
                 n.E.trainable_variables + n.D.trainable_variables),
        "g": run(lambda: model.g_loss(arr(f"{key}/g/z"), arr(f"{key}/g/z2"), int(fx[f"{key}/g/cutoff"]),
                                      noise(f"{key}/g/"), lod, blend, batch),
                 n.F.trainable_variables + n.G.trainable_variables),
        "lae": run(lambda: model.lae_loss(arr(f"{key}/lae/z"), noise(f"{key}/lae/"), lod, blend, batch),
                   n.E.trainable_variables + n.F.trainable_variables + n.G.trainable_variables),
    }


STEP_NETS = {"d": "ED", "g": "FG", "lae": "EFG"}


def _loss_cases(fx: dict, name: str) -> list[str]:
    """The fixture's loss cases (L0, L1, ...); the committed fixtures have some, a large one made
    for a check (ALAE_PARITY_FIXTURES) may not, and its loss tests are skipped."""
    keys = []
    while f"L{len(keys)}/case" in fx:
        keys.append(f"L{len(keys)}")
    if not keys:
        assert os.environ.get("ALAE_PARITY_FIXTURES"), f"{name}: no loss cases in the fixture"
        pytest.skip("this fixture holds no loss cases")
    return keys


@pytest.mark.parametrize("name", NAMES)
def test_losses_and_w_average_match_the_release(ported, name):
    """In float32, as training runs: the three losses, and the w average that the release moves
    in each of the three steps' forward passes."""
    model, fx = ported[name]
    for key in _loss_cases(fx, name):
        steps = _losses(model, name, fx, key, tf.float32)
        for step, (loss, _, _) in steps.items():
            _close(loss, fx[f"{key}/{step}/loss"], OUTPUT_TOL, f"{name} {key} {step} loss")
        model.w_avg.assign(fx[f"{key}/w_avg_before"])
        for step in ("d", "g", "lae"):
            model.update_w_avg(model._batch_mean(steps[step][2]))
        _close(model.w_avg.numpy(), fx[f"{key}/w_avg_after"], OUTPUT_TOL, f"{name} w average")
    model.w_avg.assign(fx["checkpoint/w_avg"])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_the_release(ported64, name):
    """Every parameter gradient of the three losses, both sides in float64 (see the module doc)."""
    model, fx = ported64[name]
    for key in _loss_cases(fx, name):
        for step, (loss, grads, _) in _losses(model, name, fx, key, tf.float64).items():
            _close(loss, fx[f"{key}/{step}/loss"], OUTPUT_TOL, f"{name} {key} {step} loss (float64)")
            _gradients(model, name, fx, key, step, grads, STEP_NETS[step], GRAD_TOL)


# ------------------------------------------------------------------------------- the ported run


def test_ported_run_exports_and_draws_figures(run_dirs, tmp_path):
    """The export's signatures and alae_tf.figures work on a ported run, with the release's numbers."""
    from PIL import Image

    from alae_tf.export import export
    from alae_tf.runs import load_run
    from helpers_data import write_png_tree

    run_dir = run_dirs["gray16"]
    fx = dict(np.load(os.path.join(FIXTURES, "gray16.npz")))
    export(load_run(str(run_dir)), str(tmp_path / "sm"), keras_file=False)
    sm = tf.saved_model.load(str(tmp_path / "sm"))
    _close(sm.encode(tf.constant(fx["ema/E/pixels"]))["w"], fx["ema/E/w"], OUTPUT_TOL, "exported encode")
    assert int(fx["ema/G/case"][0]) == 2
    out = sm.synthesize(tf.constant(fx["ema/G/styles"]))
    _close(out["images_float"], fx["ema/G/image"], OUTPUT_TOL, "exported synthesize")
    rec = sm.reconstruct(tf.constant(fx["ema/E/pixels"]))["images_float"]
    w = tf.constant(fx["ema/E/w"])
    _close(rec, sm.synthesize(tf.tile(w[:, None], [1, 6, 1]))["images_float"], 1e-4, "exported reconstruct")
    write_png_tree(str(tmp_path / "mine"), fx["ema/E/pixels"])
    proc = run_cli("alae_tf.figures", "reconstruct", f"--model={run_dir}", f"--images={tmp_path / 'mine'}",
                   f"--output={tmp_path / 'rec.png'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    figure = np.asarray(Image.open(tmp_path / "rec.png"))
    assert figure.shape[0] >= 16 and figure.shape[1] >= 2 * 16 * len(fx["ema/E/pixels"]) // 4


def test_ported_run_trains_on_at_the_top_lod(run_dirs, tmp_path):
    """alae_tf.train resumes a ported run where the schedule reaches the top LOD (fade-in done)."""
    import shutil

    from helpers_data import smooth_images, write_fixture

    write_fixture(str(tmp_path / "data"), "digits", smooth_images(24, 16, 1, seed=3))
    run_dir = tmp_path / "run"
    shutil.copytree(run_dirs["gray16"], run_dir)  # placed at 250 images
    proc = run_cli("alae_tf.train", f"--flagfile={FIXTURES}/gray16.cfg", f"--data_dir={tmp_path / 'data' / 'digits'}",
                   f"--output_dir={run_dir}", "--total_kimg=0.266", "--snapshot_kimg=1", "--checkpoint_kimg=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "restored" in proc.stderr and "LOD 2 (16x16)" in proc.stderr, proc.stderr[-3000:]
    assert "LOD 0" not in proc.stderr and "LOD 1" not in proc.stderr
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("-266")


# ---------------------------------------------------------------------------------------- reader


def test_reader_reads_both_formats_and_keeps_foreign_objects_inert():
    legacy = pth.load(os.path.join(FIXTURES, "gray16.pth"))
    zipped = pth.load(os.path.join(FIXTURES, "rgb128.pth"))
    for ckpt in (legacy, zipped):
        assert set(ckpt["models"]) == {"discriminator", "generator", "mapping_tl", "mapping_fl", "dlatent_avg",
                                       "discriminator_s", "generator_s", "mapping_tl_s", "mapping_fl_s"}
        tracks = ckpt["auxiliary"]["tracker"]["tracks"]
        assert isinstance(tracks["loss_d"], pth.Opaque) and tracks["loss_d"].module == "tracker"
        assert tracks["loss_d"].name == "RunningMeanTorch"
        values = tracks["loss_d"].state["values"]
        assert isinstance(values[0], np.ndarray) and values[0].shape == (1,)
        state = ckpt["auxiliary"]["encoder_optimizer"]["state"]
        assert any(isinstance(s.get("exp_avg_sq"), np.ndarray) for s in state.values())
        const = ckpt["models"]["generator"]["const"]
        assert const.dtype == np.float32 and const.ndim == 4


def _legacy_bytes(obj_pickle: bytes) -> bytes:
    """A file in torch's legacy layout around a given main pickle (no storages)."""
    return b"".join([pickle.dumps(0x1950A86A20F9469CFC6C, 2), pickle.dumps(1001, 2),
                     pickle.dumps({"little_endian": True}, 2), obj_pickle, pickle.dumps([], 2)])


def test_reader_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_bytes(pickle.dumps({"models": {"x": Evil()}}, 2)))
    obj = pth.load(str(path))
    assert not marker.exists()
    assert isinstance(obj["models"]["x"], pth.Opaque) and obj["models"]["x"].name == "system"
    with pytest.raises(port.PortError, match=r"models\.x is not a state dict"):
        port.read_release(str(path))


@pytest.mark.parametrize("content, message", [
    (b"name,value\n1,2\n", "not a readable PyTorch checkpoint"),
    (pickle.dumps({"a": 1}, 2), "not a PyTorch checkpoint"),
    (b"", "not a readable PyTorch checkpoint"),
])
def test_reader_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(pth.CheckpointError, match=message) as info:
        pth.load(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_truncated_checkpoint_is_an_error(tmp_path, name):
    data = open(os.path.join(FIXTURES, f"{name}.pth"), "rb").read()
    path = tmp_path / f"{name}.pth"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(pth.CheckpointError) as info:
        pth.load(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_storage_bounds_are_checked(tmp_path):
    # A tensor of 4 elements over a storage of 2, in the legacy format (pickle opcodes by hand).
    main = (b"\x80\x02}q\x00X\x01\x00\x00\x00tq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02("
            b"(X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05"
            b"X\x03\x00\x00\x00cpuq\x06K\x02Ntq\x07QK\x00K\x04\x85K\x01\x85\x89)tq\x08Rq\ts.")
    raw = struct.pack("<q", 2) + np.array([1.0, 2.0], np.float32).tobytes()
    path = tmp_path / "short.pth"
    path.write_bytes(_legacy_bytes(main)[: -len(pickle.dumps([], 2))] + pickle.dumps(["0"], 2) + raw)
    with pytest.raises(pth.CheckpointError, match=r"storage 0 holds 2 elements but a tensor of shape \(4,\)"):
        pth.load(str(path))


# ---------------------------------------------------------------------------------------- the CLI


def test_port_errors_are_one_line(tmp_path):
    cfg = os.path.join(FIXTURES, "gray16.cfg")
    ckpt = os.path.join(FIXTURES, "gray16.pth")
    proc = run_cli("alae_tf.port", f"--checkpoint={ckpt}", f"--flagfile={cfg}", "--latent_size=8",
                   f"--output_dir={tmp_path / 'a'}")
    line = error_line(proc)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "models.mapping_fl.map_blocks.0.fc.weight has shape (16, 16) but the flags need (8, 8)" in line, line
    assert not (tmp_path / "a").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary folder left either


def test_port_refuses_what_it_cannot_take(tmp_path, monkeypatch):
    config = _config("gray16")
    ckpt = os.path.join(FIXTURES, "gray16.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(pth.CheckpointError, match="not a readable PyTorch checkpoint") as info:
        port.port(str(text), config, str(tmp_path / "b"), 0)
    assert str(text) in str(info.value)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    with pytest.raises(port.PortError, match="exists and is not empty"):
        port.port(ckpt, config, str(tmp_path / "c"), 0)
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"
    import dataclasses
    with pytest.raises(port.PortError, match=r"models.generator.const has shape \(1, 32, 4, 4\) but the flags "
                                             r"need \(1, 16, 4, 4\)"):
        port.port(ckpt, dataclasses.replace(config, max_channels=16), str(tmp_path / "e"), 0)
    models = port.read_release(ckpt)
    models["discriminator"]["fc2.weight"] = np.zeros((1, 32), np.float32)  # as the ablation encoders have
    monkeypatch.setattr(port, "read_release", lambda path: models)
    with pytest.raises(port.PortError, match=r"models.discriminator.fc2.weight \(shape \(1, 32\)\) has no place"):
        port.port(ckpt, config, str(tmp_path / "d"), 0)
    del models["generator"]["decode_block.1.conv_2.weight"]
    with pytest.raises(port.PortError, match=r"models.generator has no tensor decode_block.1.conv_2.weight"):
        port.port(ckpt, config, str(tmp_path / "d"), 0)
    with pytest.raises(port.PortError, match="--kimg_per_lod"):
        port.placement(config, 0, [4], [0.001], "cosine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "notes.pth"]
