"""python -m alae_tf.evaluate: every metric's plumbing on a tiny run, the outputs, the CLI errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrecords_tools.writer import convert

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = ("fid,fid_rec,precision_recall,ppl_wfull,ppl_wend,ppl_zfull,ppl_zend,lpips,recon_mse,latent_probe,"
       "domain_fid,domain_fid_rec,label_preservation,class_histogram,domain_precision_recall")


def _popen(*args, **env):
    return subprocess.Popen([sys.executable, "-m", "alae_tf.evaluate", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", **env))


def _random_lpips_file(path):
    from test_metrics import random_lpips_weights

    np.savez(path, **random_lpips_weights(5))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 16x16 digits dataset (240 + 80 held out), an untrained MLP ALAE run of it, its export,
    LPIPS weights; then every CLI command of this file, run at once in subprocesses."""
    from alae_tf.export import export
    from alae_tf.models.alae import ALAE, ALAEConfig
    from alae_tf.runs import load_run, save_config

    root = tmp_path_factory.mktemp("evaluate")
    convert(source="mnist5k", output_dir=str(root / "data"), name="digits", resolution=16,
            channels=1, max_images=320, test_count=80, parts=2)
    data = str(root / "data" / "digits")
    run = str(root / "run")
    config = ALAEConfig(model="alae_mlp", resolution=16, channels=1, latent_size=8,
                        mapping_layers=2, mlp_hidden=(64, 64))
    save_config(run, config)
    with open(os.path.join(run, "flags.txt"), "w") as fh:  # as alae_tf.train writes it, started in root
        fh.write(f"# cwd: {root}\n--data_dir=data/elsewhere\n--data_dir=data/digits\n--latent_size=8\n")
    tf.train.Checkpoint(**ALAE(config).checkpoint_items()).save(os.path.join(run, "checkpoints", "ckpt"))
    exported = str(root / "export")
    export(load_run(run), exported, keras_file=False)
    lpips_file = _random_lpips_file(str(root / "lpips.npz"))
    classifier = str(root / "digits.keras")
    keras_home = root / "keras_home"
    keras_home.mkdir()
    offline = dict(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
                   https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9",
                   NO_PROXY="", no_proxy="", KERAS_HOME=str(keras_home))
    procs = {  # run at once; the other commands are checked in process (run_cli)
        "saved_model": _popen(f"--saved_model={exported}", f"--data_dir={data}",
                              "--metrics=latent_probe,lpips,ppl_wend", "--num_images=80",
                              f"--lpips_weights={lpips_file}"),
        "offline": _popen(f"--run_dir={run}", f"--data_dir={data}", "--metrics=fid", **offline),
    }
    from alae_tf.evaluate import train_classifier_cli

    report = train_classifier_cli(_flags(train_classifier=True, data_dir=data, classifier=classifier,
                                         classifier_epochs=4))
    results = {"train_classifier": report}
    for name, p in procs.items():
        out, err = p.communicate(timeout=600)
        results[name] = (p.returncode, out, err)
    return dict(root=root, data=data, run=run, exported=exported, lpips=lpips_file,
                classifier=classifier, cli=results)


def _flags(**kw):
    from types import SimpleNamespace

    base = dict(run_dir=None, saved_model=None, checkpoint=None, data_dir=None, test_data_dir=None,
                metrics=[], num_images=50000, batch_size=64, seed=0, inception_weights=None,
                lpips_weights=None, classifier=None, ppl_crop=False, output=None,
                train_classifier=False, classifier_epochs=3, resolution=0)
    return SimpleNamespace(**{**base, **kw})


def _error(world, name):
    rc, _, err = world["cli"][name]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    return lines[0]


def test_cli_errors_are_one_line(world):
    from alae_tf.evaluate import METRICS, run_cli

    data, root, run = world["data"], world["root"], world["run"]
    assert _error(world, "offline") == (
        "error: cannot download the Inception-v3 weights (offline?): pass "
        "--inception_weights=PATH, a Keras InceptionV3 weights file without the classifier top "
        "(see docs/metrics.md)")
    cases = [
        (dict(run_dir=str(root / "nope"), metrics=["fid"]), f"--run_dir={root / 'nope'}: no such directory"),
        (dict(run_dir=run, metrics=["fid", "fidd"]),
         f"unknown metric 'fidd' in --metrics (known: {', '.join(METRICS)})"),
        (dict(run_dir=run, metrics=[]), f"pass --metrics=LIST, one or more of: {', '.join(METRICS)}"),
        (dict(run_dir=run, metrics=["domain_fid"]),
         f"no domain classifier at {data}.classifier.keras: train one with python -m "
         f"alae_tf.evaluate --train_classifier --data_dir=DATA [--classifier=PATH]"),
        (dict(run_dir=run, metrics=["lpips"]),
         "LPIPS needs --lpips_weights=PATH (an .npz, see docs/metrics.md)"),
        (dict(run_dir=run, saved_model=world["exported"], metrics=["fid"]),
         "pass exactly one of --run_dir=RUN and --saved_model=DIR"),
        (dict(saved_model=run, metrics=["fid"]),
         f"--saved_model={run}: not a SavedModel (no saved_model.pb)"),
        (dict(run_dir=run, metrics=["latent_probe"], test_data_dir=str(root / "none")),
         f"--test_data_dir={root / 'none'}: "),
        (dict(saved_model=world["exported"], data_dir=None, metrics=["fid"]),
         "--data_dir is required with --saved_model (the dataset the model was trained on)"),
        (dict(run_dir=str(root), data_dir=None, metrics=["fid"]),
         f"pass --data_dir=DATA: {root / 'flags.txt'} (which records the run's dataset) cannot be read"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError) as err:
            run_cli(_flags(**{"data_dir": data, **kw}), log=lambda *_: None)
        assert str(err.value).startswith(message) if message.endswith(": ") else \
            str(err.value) == message, (kw, str(err.value))


def test_train_classifier_reports_test_accuracy(world):
    line, wrote = world["cli"]["train_classifier"].splitlines()
    assert line.startswith("domain classifier (16x16, 10 classes, 240 training images, 4 epochs): "
                           "test accuracy ")
    assert line.endswith(f"on 80 images ({world['data']}_test)")
    assert float(line.split("test accuracy ")[1].split()[0]) > 0.5  # 240 digits, 4 epochs
    assert wrote == f"wrote {world['classifier']}"
    assert os.path.isfile(world["classifier"])


def _toy_features():
    from alae_tf.metrics.fid import FeatureNet

    proj = np.random.RandomState(0).randn(256, 12).astype(np.float32) / 8
    return FeatureNet("toy", "p12", lambda x: np.tanh(x.reshape(len(x), -1) @ proj), batch_size=10)


def test_every_metric_against_direct_computation(world):
    from alae_tf.data import take_images
    from alae_tf.evaluate import evaluate
    from alae_tf.images import to_float
    from alae_tf.inference import open_model
    from alae_tf.metrics import domain, fid, precision_recall, probe
    from alae_tf.metrics.lpips import LPIPS
    from alae_tf.runs import load_run

    model = open_model(world["run"])
    toy, lp = _toy_features(), LPIPS.from_file(world["lpips"])
    clf = domain.load_classifier(world["classifier"])
    n, seed = 50, 3
    out = evaluate(model, ALL.split(","), world["data"], num_images=n, batch_size=24, seed=seed,
                   inception=toy, lpips=lp, classifier=clf, log=lambda *_: None)
    v = out["metrics"]

    alae = load_run(world["run"])
    reals = to_float(take_images(world["data"], 16, n))
    z = np.random.RandomState(seed).standard_normal((n, 8)).astype(np.float32)
    fake = alae.generate(z, truncation=False, noise=False).numpy()
    rec = alae.decode(alae.encode(reals), noise=False).numpy()
    assert v["fid"] == pytest.approx(fid.fid_of_features(toy(reals), toy(fake)), rel=1e-4)
    assert v["fid_rec"] == pytest.approx(fid.fid_of_features(toy(reals), toy(rec)), rel=1e-4)
    pr = precision_recall.precision_recall(toy(reals), toy(fake))
    assert v["precision_recall/precision"] == pytest.approx(pr["precision"])
    assert v["precision_recall/recall"] == pytest.approx(pr["recall"])
    assert v["domain_fid"] == pytest.approx(
        fid.fid_of_features(clf.features(reals), clf.features(fake)), rel=1e-4)
    assert v["domain_fid_rec"] == pytest.approx(
        fid.fid_of_features(clf.features(reals), clf.features(rec)), rel=1e-4)
    assert v["class_histogram"] == pytest.approx(domain.class_histogram(clf, fake))

    test_x, test_y = take_images(world["data"] + "_test", 16, 80, labels=True)
    test_x = to_float(test_x)
    test_x, test_y = test_x[:n], test_y[:n]
    test_rec = alae.decode(alae.encode(test_x), noise=False).numpy()
    assert v["lpips"] == pytest.approx(np.mean(lp(test_x, test_rec)), rel=1e-4)
    assert v["recon_mse"] == pytest.approx(np.mean((test_rec.astype(np.float64) - test_x) ** 2), rel=1e-5)
    assert v["label_preservation"] == pytest.approx(domain.label_preservation(clf, test_rec, test_y))
    assert v["label_preservation/classifier_accuracy"] == pytest.approx(
        domain.label_preservation(clf, test_x, test_y))

    train_x, train_y = take_images(world["data"], 16, n, labels=True)
    train_x = to_float(train_x)
    px = probe.accuracies(train_x, train_y, test_x, test_y, seed)
    assert v["latent_probe/pixels/1nn"] == px["1nn"] and v["latent_probe/pixels/svm"] == px["svm"]
    codes = probe.accuracies(alae.encode(train_x).numpy(), train_y, alae.encode(test_x).numpy(),
                             test_y, seed)
    assert v["latent_probe/codes/1nn"] == codes["1nn"]
    for m in ("ppl_wfull", "ppl_wend", "ppl_zfull", "ppl_zend"):
        assert np.isfinite(v[m]) and v[m] > 0, m
        assert out["details"][m]["samples"] == n and out["details"][m]["crop"] is False
    assert out["details"]["latent_probe"] == {"train": n, "test": n, "train_split": world["data"],
                                              "test_split": world["data"] + "_test"}
    assert any("not comparable with Inception FIDs" in note for note in out["notes"])


def test_models_without_encoder_or_mapping_skip_those_metrics(world):
    from alae_tf.evaluate import evaluate
    from alae_tf.inference import open_model

    model = open_model(world["run"])
    model.has_encoder = model.has_mapping = False
    out = evaluate(model, ["fid_rec", "ppl_wend", "latent_probe"], world["data"], num_images=8,
                   log=lambda *_: None)
    assert out["metrics"] == {}
    assert out["notes"] == ["fid_rec: skipped, the model (alae_mlp) has no encoder",
                            "ppl_wend: skipped, the model (alae_mlp) has no mapping network (W space)",
                            "latent_probe: skipped, the model (alae_mlp) has no encoder"]


def test_saved_model_cli_writes_json_markdown_and_tensorboard(world):
    from alae_tf.evaluate import evaluate
    from alae_tf.inference import open_model
    from alae_tf.metrics.lpips import LPIPS

    rc, out, err = world["cli"]["saved_model"]
    assert rc == 0, err[-2000:]
    out_dir = world["exported"] + "_eval"
    assert f"wrote {out_dir}/metrics.json and metrics.md" in out
    with open(os.path.join(out_dir, "metrics.json")) as fh:
        record = json.load(fh)
    assert record["kind"] == "saved_model" and record["data_dir"] == world["data"]
    assert sorted(record["metrics"]) == ["latent_probe/codes/1nn", "latent_probe/codes/svm",
                                         "latent_probe/pixels/1nn", "latent_probe/pixels/svm",
                                         "lpips", "ppl_wend"]
    md = open(os.path.join(out_dir, "metrics.md")).read()
    assert "| metric | value | images |" in md
    assert f"| latent_probe/pixels/1nn | {record['metrics']['latent_probe/pixels/1nn']:.4f} | 80 |" in md
    assert "| metric | value | images |" in out
    # the same numbers from the run directory in process (export = EMA networks, no noise)
    direct = evaluate(open_model(world["run"]), ["latent_probe", "lpips", "ppl_wend"], world["data"],
                      num_images=80, lpips=LPIPS.from_file(world["lpips"]), log=lambda *_: None)
    for key, value in direct["metrics"].items():
        assert record["metrics"][key] == pytest.approx(value, rel=1e-3, abs=1e-6), key
    events = os.listdir(os.path.join(out_dir, "tensorboard"))
    assert events and events[0].startswith("events.out.tfevents")


def test_run_dir_evaluates_on_the_dataset_it_recorded(world, tmp_path, monkeypatch):
    from alae_tf.evaluate import run_cli
    from alae_tf.inference import recorded_data_dir

    merged = run_cli(_flags(run_dir=world["run"], metrics=["recon_mse"], num_images=8,
                            output=str(tmp_path / "eval")), log=lambda *_: None)
    assert merged["data_dir"] == world["data"]  # the last --data_dir, relative to the recorded cwd
    assert "recon_mse" in merged["metrics"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "flags.txt").write_text("--data_dir=data/digits\n")  # no cwd recorded: the current one
    monkeypatch.chdir(world["root"])
    assert recorded_data_dir(str(run)) == "data/digits"
    (run / "flags.txt").write_text("--data_dir=data/gone\n")
    with pytest.raises(ValueError, match=r"^the run's dataset --data_dir=data/gone \(recorded in "
                                         r"\S+flags.txt\) no longer exists: pass --data_dir=DATA$"):
        recorded_data_dir(str(run))
    (run / "flags.txt").write_text("--latent_size=8\n")
    with pytest.raises(ValueError, match=r"^pass --data_dir=DATA: \S+flags.txt records no --data_dir$"):
        recorded_data_dir(str(run))


def test_unreadable_held_out_set_stops_instead_of_using_the_training_set(world, tmp_path):
    import shutil

    from alae_tf.evaluate import evaluate, train_classifier_cli
    from alae_tf.inference import open_model

    shutil.copytree(world["root"] / "data", tmp_path / "data")
    data, test = str(tmp_path / "data" / "digits"), str(tmp_path / "data" / "digits_test")
    held = sorted(f for f in os.listdir(tmp_path / "data") if f.startswith("digits_test-"))
    os.remove(tmp_path / "data" / held[0])
    model = open_model(world["run"])
    with pytest.raises(ValueError) as err:
        evaluate(model, ["recon_mse"], data, num_images=8, log=lambda *_: None)
    assert str(err.value).startswith(f"held-out set {test}: ") and len(str(err.value).splitlines()) == 1
    assert str(err.value).endswith("; not using --data_dir in its place: repair it or pass "
                                   "--test_data_dir=DATA")
    with pytest.raises(ValueError, match=f"^held-out set {test}: "):  # nor does the classifier
        train_classifier_cli(_flags(train_classifier=True, data_dir=data))
    for f in os.listdir(tmp_path / "data"):  # no held-out set at all: the training set, with a note
        if f.startswith("digits_test"):
            os.remove(tmp_path / "data" / f)
    out = evaluate(model, ["recon_mse"], data, num_images=8, log=lambda *_: None)
    assert out["notes"] == [f"no held-out split ({test}): lpips / recon_mse / label_preservation use "
                            f"--data_dir"]
    assert out["details"]["recon_mse"]["split"] == data


def test_write_outputs_merges_results_of_the_same_checkpoint(tmp_path):
    from alae_tf.evaluate import write_outputs

    base = {"model": "/r", "kind": "alae_mlp", "step": 640, "data_dir": "/d"}
    write_outputs(str(tmp_path), {**base, "metrics": {"fid": 12.5}, "details": {"fid": {"samples": 9}},
                                  "notes": ["a"]}, str(tmp_path / "tb"))
    merged = write_outputs(str(tmp_path), {**base, "metrics": {"lpips": 0.25, "class_histogram": [0.5, 0.5]},
                                           "details": {}, "notes": ["a", "b"]}, str(tmp_path / "tb"))
    assert merged["metrics"] == {"fid": 12.5, "lpips": 0.25, "class_histogram": [0.5, 0.5]}
    assert merged["notes"] == ["a", "b"]
    assert json.load(open(tmp_path / "metrics.json"))["metrics"] == merged["metrics"]
    md = open(tmp_path / "metrics.md").read()
    assert "| fid | 12.50 | 9 |" in md and "| class_histogram | 50.0% 50.0% |  |" in md
    # another checkpoint starts afresh
    again = write_outputs(str(tmp_path), {**base, "step": 1280, "metrics": {"lpips": 0.2},
                                          "details": {}, "notes": []})
    assert again["metrics"] == {"lpips": 0.2}
    tags = {}
    for f in os.listdir(tmp_path / "tb"):
        for e in tf.compat.v1.train.summary_iterator(str(tmp_path / "tb" / f)):
            for val in e.summary.value:
                tags[val.tag] = (e.step, float(tf.make_ndarray(val.tensor)))
    assert tags == {"eval/fid": (640, 12.5), "eval/lpips": (640, 0.25)}
