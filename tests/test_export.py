"""SavedModel / .keras export: signatures equal the in-process EMA networks, loadable without alae_tf."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrecords_tools.writer import convert

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = dict(atol=1e-4, rtol=1e-4)
SIGNATURES = {"generate", "map", "decode", "encode", "reconstruct", "serving_default"}
# test_figures imports these session fixtures; pytest would build them once per module that
# holds them, so their values are kept here to make and train them once per session.
_MADE = {}


def _once(name, make):
    if name not in _MADE:
        _MADE[name] = make()
    return _MADE[name]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def cli(module, *args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=cwd, env=_env(), timeout=600)


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    return _once("digits", lambda: _make_digits(tmp_path_factory))


def _make_digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("export_data")
    convert(source="mnist5k", output_dir=str(out), name="digits", resolution=16, channels=1,
            max_images=256, parts=2)
    return str(out / "digits")


@pytest.fixture(scope="session")
def runs(digits, tmp_path_factory):
    """{'mlp': RUN, 'style': RUN}: two tiny trained runs, trained in parallel subprocesses."""
    return _once("runs", lambda: _make_runs(digits, tmp_path_factory))


def _make_runs(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("export_runs")
    common = [f"--data_dir={digits}", "--channels=1", "--latent_size=8", "--mapping_layers=2"]
    args = {"mlp": ["--model=alae_mlp", "--batch_sizes=16", "--total_kimg=0.032"],
            "style": ["--model=alae_style", "--layer_count=3", "--start_channels=8",
                      "--max_channels=16", "--batch_sizes=8", "--total_kimg=0.016"]}
    procs = {k: subprocess.Popen([sys.executable, "-m", "alae_tf.train", *common, *a,
                                  f"--output_dir={root / k}"], cwd=REPO, env=_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for k, a in args.items()}
    for k, p in procs.items():
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    return {k: str(root / k) for k in args}


@pytest.fixture(scope="session")
def exports(runs):
    """{'mlp': SAVEDMODEL, 'style': SAVEDMODEL}: the style run through the CLI, the MLP in process."""
    return _once("exports", lambda: _make_exports(runs))


def _make_exports(runs):
    from alae_tf.export import export
    from alae_tf.runs import load_run

    out = {"style": os.path.join(runs["style"], "exported")}
    result = cli("alae_tf.export", f"--run_dir={runs['style']}", f"--output={out['style']}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote saved_model: {out['style']}" in result.stdout
    out["mlp"] = os.path.join(runs["mlp"], "export")
    export(load_run(runs["mlp"]), out["mlp"])
    return out


LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
assert "alae_tf" not in sys.modules
# As in a process where alae_tf is not installed (it may be, editable, in this environment):
# any import of alae_tf or tfrecords_tools fails.
sys.modules["alae_tf"] = None
sys.modules["tfrecords_tools"] = None
try:
    import alae_tf
    raise SystemExit("alae_tf importable")
except ImportError:
    pass
sm = tf.saved_model.load(sys.argv[1])
x = dict(np.load(sys.argv[2]))
out = {}
sig = sm.signatures
g = sig["generate"](z=tf.constant(x["z"]), truncation_psi=tf.constant(float(x["psi"])))
out["generate_images"], out["generate_float"] = g["images"].numpy(), g["images_float"].numpy()
out["map_w"] = sig["map"](z=tf.constant(x["z"]))["w"].numpy()
d = sig["decode"](w=tf.constant(x["w"]))
out["decode_images"], out["decode_float"] = d["images"].numpy(), d["images_float"].numpy()
out["encode_w"] = sig["encode"](images=tf.constant(x["images"]))["w"].numpy()
r = sig["reconstruct"](images=tf.constant(x["images"]))
out["reconstruct_images"], out["reconstruct_float"] = r["images"].numpy(), r["images_float"].numpy()
out["serving_images"] = sig["serving_default"](images=tf.constant(x["images"]))["images"].numpy()
# decode(encode(x)) through the signatures
w = sig["encode"](images=tf.constant(x["images"]))["w"]
out["decode_of_encode"] = sig["decode"](w=w)["images_float"].numpy()
out["synthesize"] = sm.synthesize(tf.constant(x["styles"]))["images_float"].numpy()
np.savez(sys.argv[3], **out)
print(json.dumps(sorted(sig.keys())))
"""


@pytest.mark.parametrize("kind", ["mlp", "style"])
def test_saved_model_matches_in_process_networks_without_alae_tf(kind, runs, exports, tmp_path):
    from alae_tf.runs import load_run

    model = load_run(runs[kind])
    c = model.config
    rng = np.random.RandomState(1)
    z = rng.standard_normal((3, c.latent_size)).astype(np.float32)
    w = rng.standard_normal((3, c.latent_size)).astype(np.float32)
    images = rng.randint(0, 256, (3, c.resolution, c.resolution, c.channels)).astype(np.uint8)
    styles = rng.standard_normal((2, model.ema.G.num_styles, c.latent_size)).astype(np.float32)
    np.savez(tmp_path / "in.npz", z=z, w=w, images=images, styles=styles, psi=np.float32(0.5))
    (tmp_path / "loader.py").write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "loader.py", exports[kind], "in.npz", "out.npz"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert SIGNATURES <= set(json.loads(result.stdout.strip().splitlines()[-1]))
    out = dict(np.load(tmp_path / "out.npz"))

    from alae_tf.images import to_float, to_uint8

    model.config.truncation_psi = 0.5  # the psi the signature was given
    gen = model.generate(tf.constant(z), noise=False).numpy()
    np.testing.assert_allclose(out["generate_float"], gen, **TOL)
    assert out["generate_images"].dtype == np.uint8
    assert np.abs(out["generate_images"].astype(int) - to_uint8(gen).astype(int)).max() <= 1
    np.testing.assert_allclose(out["map_w"], model.ema.F(tf.constant(z)).numpy(), **TOL)
    np.testing.assert_allclose(out["decode_float"], model.decode(tf.constant(w), noise=False).numpy(), **TOL)
    x = to_float(tf.constant(images))
    enc = model.encode(x).numpy()
    np.testing.assert_allclose(out["encode_w"], enc, **TOL)
    rec = model.decode(model.encode(x), noise=False).numpy()
    np.testing.assert_allclose(out["reconstruct_float"], rec, **TOL)
    # reconstruct == decode(encode(x)), serving_default == reconstruct
    np.testing.assert_allclose(out["reconstruct_float"], out["decode_of_encode"], **TOL)
    np.testing.assert_array_equal(out["serving_images"], out["reconstruct_images"])
    assert out["reconstruct_images"].shape == images.shape
    synth = model.ema.G(tf.constant(styles), lod=c.top_lod, alpha=1.0, noise=False).numpy()
    np.testing.assert_allclose(out["synthesize"], synth, **TOL)


def test_saved_model_cli_lists_the_signatures(exports):
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "show",
                             "--dir", exports["style"], "--all"], capture_output=True, text=True,
                            env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    listed = set(re.findall(r"signature_def\['(\w+)'\]", result.stdout))
    assert SIGNATURES <= listed
    block = result.stdout.split("signature_def['reconstruct']")[1].split("signature_def[")[0]
    assert "inputs['images']" in block and "DT_UINT8" in block and "(-1, 16, 16, 1)" in block


def test_keras_file_reconstructs(runs, exports):
    import keras

    from alae_tf.export import KERAS_FILE
    from alae_tf.runs import load_run

    model = load_run(runs["style"])
    loaded = keras.saving.load_model(os.path.join(exports["style"], KERAS_FILE))
    x = np.random.RandomState(2).uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
    out = loaded(x)
    np.testing.assert_allclose(np.asarray(out["w"]), model.encode(tf.constant(x)).numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(out["reconstruction"]),
                               model.decode(model.encode(tf.constant(x)), noise=False).numpy(), **TOL)


def test_export_replaces_and_leaves_no_temp(runs, exports):
    from alae_tf.export import export
    from alae_tf.runs import load_run

    export(load_run(runs["mlp"]), exports["mlp"], keras_file=False)
    assert os.path.exists(os.path.join(exports["mlp"], "saved_model.pb"))
    assert not [f for f in os.listdir(runs["mlp"]) if f.startswith(".export-") or f.endswith(".old")]


def test_export_cli_error_is_one_line(tmp_path):
    result = cli("alae_tf.export", f"--run_dir={tmp_path}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.match(r"^error: \S+ is not a run directory of alae_tf.train", last), last


def test_trained_run_records_its_dataset(runs, digits):
    from alae_tf.inference import recorded_data_dir

    with open(os.path.join(runs["mlp"], "flags.txt")) as fh:
        assert fh.readline() == f"# cwd: {REPO}\n"  # relative --data_dir resolve against it
    assert recorded_data_dir(runs["mlp"]) == digits


@pytest.mark.parametrize("name", ["stylegan", "dcgan"])
def test_gan_baseline_exports_open_as_their_models(name, tmp_path):
    """StyleGAN exports map and decode (PPL in W), DCGAN only generate; no encoder in either."""
    from alae_tf.export import export, module_of
    from alae_tf.inference import Model, open_model
    from alae_tf.models.dcgan import DCGAN, DCGANConfig
    from alae_tf.models.stylegan import StyleGAN, StyleGANConfig

    common = dict(model=name, resolution=16, channels=1, latent_size=8, start_channels=8, max_channels=16)
    model = (StyleGAN(StyleGANConfig(**common, layer_count=3, mapping_layers=2)) if name == "stylegan"
             else DCGAN(DCGANConfig(**common)))
    export(model, str(tmp_path / "sm"))
    a, b = Model(module_of(model)), open_model(str(tmp_path / "sm"))
    mapping = name == "stylegan"
    assert (a.name, a.has_mapping, a.has_encoder, a.has_styles) == (name, mapping, False, False)
    assert (b.name, b.kind, b.has_mapping, b.has_encoder, b.channels) == (name, "saved_model", mapping,
                                                                          False, 1)
    z = a.latents(0, 2)
    want = model.generate(tf.constant(z), truncation=False, noise=False).numpy()
    np.testing.assert_allclose(a.generate(z), want, **TOL)
    np.testing.assert_allclose(b.generate(z), want, **TOL)
    if mapping:
        np.testing.assert_allclose(b.decode(b.map(z)), want, **TOL)
