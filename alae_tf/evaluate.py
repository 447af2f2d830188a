"""Measures a trained model: FID, reconstruction FID, PPL, LPIPS, latent probes, domain metrics.

    python -m alae_tf.evaluate --run_dir=RUN | --saved_model=DIR --data_dir=DATA --metrics=LIST
        [--num_images=50000 --test_data_dir=DATA_test --inception_weights=PATH
         --lpips_weights=PATH --classifier=PATH --ppl_crop --output=DIR --checkpoint=PATH]
    python -m alae_tf.evaluate --train_classifier --data_dir=DATA [--classifier=PATH]

Writes metrics.json and metrics.md into RUN/eval (or DIR_eval next to a SavedModel, or
--output), merging with earlier results there, and TensorBoard scalars eval/<metric>. Metrics
and file formats: docs/metrics.md.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import sys
import time
from typing import Callable, Iterable, Iterator

import numpy as np

from alae_tf.metrics import ppl as ppl_lib

METRICS = ("fid", "fid_rec", "precision_recall", *ppl_lib.METRICS, "lpips", "recon_mse", "latent_probe",
           "domain_fid", "domain_fid_rec", "label_preservation", "class_histogram",
           "domain_precision_recall")
INCEPTION_METRICS = {"fid", "fid_rec", "precision_recall"}
DOMAIN_METRICS = {"domain_fid", "domain_fid_rec", "label_preservation", "class_histogram",
                  "domain_precision_recall"}
LPIPS_METRICS = {"lpips", *ppl_lib.METRICS}
ENCODER_METRICS = {"fid_rec", "domain_fid_rec", "lpips", "recon_mse", "latent_probe", "label_preservation"}
MAPPING_METRICS = {"ppl_wfull", "ppl_wend"}
EVAL_DIR = "eval"
JSON_FILE, MD_FILE = "metrics.json", "metrics.md"


# ----------------------------------------------------------------------------------------------
# Models: one numpy interface (NHWC float [-1, 1]) over a run's model and an exported SavedModel
# ----------------------------------------------------------------------------------------------

def _accepted(fn, **kwargs) -> dict:
    """The keyword arguments among ``kwargs`` that ``fn`` accepts (models differ: ALAE's
    generate/decode take ``noise``, the baselines' do not)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


class RunModel:
    """A model of alae_tf.runs.load_run (ALAE or a baseline of the same interface)."""

    def __init__(self, model, step: int = 0):
        c = model.config
        self.model, self.step = model, int(step)
        self.name = str(getattr(c, "model", type(model).__name__))
        self.resolution, self.channels = int(c.resolution), int(c.channels)
        self.latent_size = int(c.latent_size)
        self.can_encode = bool(getattr(model, "can_encode", True))
        ema = getattr(model, "ema", None)
        self._map = getattr(model, "map", None) or getattr(ema, "F", None)

    @property
    def has_mapping(self) -> bool:
        return self._map is not None

    @staticmethod
    def _np(x) -> np.ndarray:
        return np.asarray(x, np.float32)

    def generate(self, z):
        import tensorflow as tf

        fn = self.model.generate
        return self._np(fn(tf.constant(z, tf.float32), **_accepted(fn, truncation=False, noise=False)))

    def map(self, z):
        import tensorflow as tf

        return self._np(self._map(tf.constant(z, tf.float32)))

    def encode(self, x):
        import tensorflow as tf

        return self._np(self.model.encode(tf.constant(x, tf.float32)))

    def decode(self, w):
        import tensorflow as tf

        fn = self.model.decode
        return self._np(fn(tf.constant(w, tf.float32), **_accepted(fn, noise=False)))

    def reconstruct(self, x):
        return self.decode(self.encode(x))


class SavedModelModel:
    """A SavedModel of alae_tf.export (see docs/export.md); truncation off (psi = 1)."""

    def __init__(self, path: str):
        import tensorflow as tf

        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"--saved_model={path}: not a SavedModel (no saved_model.pb)")
        try:
            sm = tf.saved_model.load(path)
            self.resolution = int(sm.resolution.numpy())
            self.latent_size = int(sm.latent_size.numpy())
            self.channels = int(sm.encode.input_signature[0].shape[-1])
        except (AttributeError, tf.errors.OpError) as e:
            raise ValueError(f"--saved_model={path}: not a SavedModel of alae_tf.export "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self.sm, self.name, self.step = sm, "saved_model", 0
        self.can_encode = self.has_mapping = True
        self._one = tf.constant(1.0)

    def generate(self, z):
        return self.sm.generate(np.asarray(z, np.float32), self._one)["images_float"].numpy()

    def map(self, z):
        return self.sm.map(np.asarray(z, np.float32))["w"].numpy()

    def encode(self, x):
        return self.sm.encode_float(np.asarray(x, np.float32))["w"].numpy()

    def decode(self, w):
        return self.sm.decode(np.asarray(w, np.float32))["images_float"].numpy()

    def reconstruct(self, x):
        return self.decode(self.encode(x))


def open_run(run_dir: str, checkpoint: str | None = None) -> RunModel:
    import tensorflow as tf

    from alae_tf.runs import load_run

    if not os.path.isdir(run_dir):
        raise ValueError(f"--run_dir={run_dir}: no such directory")
    model = load_run(run_dir, checkpoint)
    path = checkpoint or tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    try:
        step = int(tf.train.load_variable(path, "images_seen/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):
        step = int(getattr(model, "step", 0) or 0)
    return RunModel(model, step)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

class Split:
    """One dataset (a split) read at the model's resolution, in file order."""

    def __init__(self, path: str, flag: str, resolution: int, channels: int):
        from alae_tf.data import describe

        self.path, self.flag = path, flag
        try:
            self.info = describe(path)
            self.resolution = resolution
            self.info.level_at(resolution)
        except ValueError as e:
            raise ValueError(f"{flag}={path}: {str(e).splitlines()[0]}") from None
        if self.info.channels != channels:
            raise ValueError(f"{flag}={path} has {self.info.channels}-channel images, the model "
                             f"{channels}")
        self.count = self.info.count

    @property
    def has_labels(self) -> bool:
        return bool(self.info.has_labels)

    def batches(self, count: int, batch_size: int, labels: bool = False) -> Iterator:
        """Batches (images float32 NHWC [-1, 1], labels or None) of the first ``count`` images."""
        from alae_tf.data import make_dataset, to_float

        if labels and not self.has_labels:
            raise ValueError(f"{self.flag}={self.path} has no labels")
        count = min(count, self.count)
        # whole batches only (make_dataset drops a remainder): a divisor of the record count
        b = next(d for d in range(min(batch_size, self.count), 0, -1) if self.count % d == 0)
        ds = make_dataset(self.path, self.resolution, b, labels=labels, shuffle=False, repeat=False,
                          info=self.info)
        seen = 0
        for item in ds:
            x, y = item if labels else (item, None)
            take = min(b, count - seen)
            yield to_float(x).numpy()[:take], (None if y is None else y.numpy()[:take])
            seen += take
            if seen >= count:
                return


def default_test_dir(data_dir: str) -> str:
    return data_dir.rstrip("/") + "_test"


def _collect(batches: Iterable, consumers: dict[str, Callable]) -> dict[str, np.ndarray]:
    """Runs every consumer on every batch; concatenates each consumer's outputs."""
    out = {k: [] for k in consumers}
    for x in batches:
        for k, fn in consumers.items():
            out[k].append(np.asarray(fn(x)))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def _latent_batches(seed: int, num: int, latent_size: int, batch_size: int) -> Iterator:
    rng = np.random.RandomState(seed)
    for start in range(0, num, batch_size):
        yield rng.standard_normal((min(batch_size, num - start), latent_size)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------

def parse_metrics(text) -> list[str]:
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    if not names:
        raise ValueError(f"pass --metrics=LIST, one or more of: {', '.join(METRICS)}")
    for m in names:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r} in --metrics (known: {', '.join(METRICS)})")
    return list(dict.fromkeys(names))


def evaluate(model, metrics: list[str], data_dir: str, test_data_dir: str | None = None, *,
             num_images: int = 50000, batch_size: int = 64, seed: int = 0, inception=None,
             lpips=None, classifier=None, ppl_crop: bool = False, log=print) -> dict:
    """Computes ``metrics`` of ``model`` (RunModel / SavedModelModel interface).

    inception: a fid.FeatureNet; lpips: an lpips.LPIPS; classifier: a domain.DomainClassifier;
    each is needed only by its metrics. Returns {"metrics": {key: value}, "details": {metric:
    {...}}, "notes": [...]}."""
    from alae_tf.metrics import domain, fid, precision_recall, probe
    from alae_tf.metrics.lpips import downsample_to

    if num_images < 4:
        raise ValueError(f"--num_images must be at least 4, got {num_images}")
    values, details, notes = {}, {}, []
    todo = []
    for m in metrics:
        if m in ENCODER_METRICS and not model.can_encode:
            notes.append(f"{m}: skipped, the model ({model.name}) has no encoder")
        elif m in MAPPING_METRICS and not model.has_mapping:
            notes.append(f"{m}: skipped, the model ({model.name}) has no mapping network (W space)")
        else:
            todo.append(m)
    need = set(todo)
    for names, net, what in ((INCEPTION_METRICS, inception, "an Inception network"),
                             (LPIPS_METRICS, lpips, "LPIPS weights"),
                             (DOMAIN_METRICS, classifier, "a domain classifier")):
        if need & names and net is None:
            raise ValueError(f"{', '.join(sorted(need & names))} need(s) {what}")
    if need & DOMAIN_METRICS:
        if (classifier.resolution, classifier.channels) != (model.resolution, model.channels):
            raise ValueError(f"the domain classifier takes {classifier.resolution}x"
                             f"{classifier.resolution}x{classifier.channels} images, the model "
                             f"makes {model.resolution}x{model.resolution}x{model.channels}: "
                             f"train one with --train_classifier --resolution={model.resolution}")
        notes.append(domain.NOT_COMPARABLE)
    res, bs = model.resolution, batch_size
    train = Split(data_dir, "--data_dir", res, model.channels)
    n_real = min(num_images, train.count)
    if n_real < num_images and need - LPIPS_METRICS - {"latent_probe", "label_preservation", "recon_mse"}:
        notes.append(f"real images: {n_real} (all of --data_dir), fewer than --num_images={num_images}")

    test = None
    if need & {"latent_probe", "lpips", "label_preservation", "recon_mse"}:
        test_path = test_data_dir or default_test_dir(data_dir)
        if test_data_dir or _exists(test_path):
            test = Split(test_path, "--test_data_dir", res, model.channels)
        elif "latent_probe" in need:
            raise ValueError(f"latent_probe needs a held-out split: {test_path} does not exist; "
                             f"pass --test_data_dir=DATA")
        else:
            test = train
            notes.append(f"no held-out split ({test_path}): lpips / recon_mse / label_preservation use "
                         f"--data_dir")
        if need & {"latent_probe", "label_preservation"} and not (train.has_labels and test.has_labels):
            raise ValueError(f"latent_probe / label_preservation need labels: {data_dir} or "
                             f"{test.path} has none")

    def timed(name, t0):
        log(f"{name}: {time.time() - t0:.1f} s")

    def real_batches():
        return (x for x, _ in train.batches(n_real, bs))

    # -------- features of the reals (cached next to the dataset)
    t0 = time.time()
    real = {}
    if need & {"fid", "fid_rec", "precision_recall"}:
        real["inception"] = fid.cached_features(data_dir, res, inception, n_real,
                                                lambda: np.concatenate(list(real_batches())), log)
    dom_net = classifier.feature_net() if classifier is not None else None
    if need & {"domain_fid", "domain_fid_rec", "domain_precision_recall"}:
        real["domain"] = fid.cached_features(data_dir, res, dom_net, n_real,
                                             lambda: np.concatenate(list(real_batches())), log)
    if real:
        timed("real features", t0)

    # -------- samples
    consumers = {}
    if need & {"fid", "precision_recall"}:
        consumers["inception"] = inception
    if need & {"domain_fid", "domain_precision_recall"}:
        consumers["domain"] = classifier.features
    if "class_histogram" in need:
        consumers["classes"] = classifier.predict
    if consumers:
        t0 = time.time()
        fake = _collect((model.generate(z) for z in _latent_batches(seed, num_images,
                                                                     model.latent_size, bs)),
                        consumers)
        timed(f"{num_images} samples", t0)
        for space, fid_key, pr_key, net in (
                ("inception", "fid", "precision_recall", inception),
                ("domain", "domain_fid", "domain_precision_recall", classifier)):
            common = {"samples": num_images, "reals": n_real,
                      "features": f"{space}:{getattr(net, 'tag', '')}"}
            if fid_key in need:
                values[fid_key] = fid.fid_of_features(real[space], fake[space])
                details[fid_key] = common
            if pr_key in need:
                for k, v in precision_recall.precision_recall(real[space], fake[space]).items():
                    values[f"{pr_key}/{k}"] = v
                details[pr_key] = {**common, "k": precision_recall.K}
        if "class_histogram" in need:
            counts = np.bincount(fake["classes"], minlength=classifier.num_classes)
            values["class_histogram"] = (counts / num_images).tolist()
            details["class_histogram"] = {"samples": num_images, "classifier": classifier.tag}

    # -------- reconstructions of the training split
    consumers = {}
    if "fid_rec" in need:
        consumers["inception"] = inception
    if "domain_fid_rec" in need:
        consumers["domain"] = classifier.features
    if consumers:
        t0 = time.time()
        rec = _collect((model.reconstruct(x) for x in real_batches()), consumers)
        timed(f"{n_real} reconstructions", t0)
        if "fid_rec" in need:
            values["fid_rec"] = fid.fid_of_features(real["inception"], rec["inception"])
            details["fid_rec"] = {"images": n_real, "features": f"inception:{inception.tag}"}
        if "domain_fid_rec" in need:
            values["domain_fid_rec"] = fid.fid_of_features(real["domain"], rec["domain"])
            details["domain_fid_rec"] = {"images": n_real, "features": f"domain:{classifier.tag}"}

    # -------- the held-out split: LPIPS, label preservation, codes
    if test is not None:
        t0 = time.time()
        n_test = min(num_images, test.count)
        labelled = bool(need & {"latent_probe", "label_preservation"})
        acc = {"codes": [], "labels": [], "lpips": [], "rec_pred": [], "orig_pred": [], "pixels": [], "mse": []}
        for x, y in test.batches(n_test, bs, labels=labelled):
            codes = model.encode(x)
            if need & {"lpips", "label_preservation", "recon_mse"}:
                r = model.decode(codes)
            if "recon_mse" in need:
                acc["mse"].append(np.mean((np.asarray(r, np.float64) - x) ** 2, axis=(1, 2, 3)))
            if "lpips" in need:
                acc["lpips"].append(lpips(downsample_to(x), downsample_to(r)))
            if "label_preservation" in need:
                acc["rec_pred"].append(classifier.predict(r))
                acc["orig_pred"].append(classifier.predict(x))
            acc["codes"].append(codes)
            acc["pixels"].append(x.reshape(len(x), -1))
            if y is not None:
                acc["labels"].append(y)
        acc = {k: np.concatenate(v) for k, v in acc.items() if v}
        timed(f"{n_test} held-out images", t0)
        if "lpips" in need:
            values["lpips"] = float(np.mean(acc["lpips"]))
            details["lpips"] = {"images": n_test, "split": test.path,
                                "resolution": min(res, 256)}
        if "recon_mse" in need:
            values["recon_mse"] = float(np.mean(acc["mse"]))
            details["recon_mse"] = {"images": n_test, "split": test.path, "pixels": "[-1, 1]"}
        if "label_preservation" in need:
            values["label_preservation"] = float(np.mean(acc["rec_pred"] == acc["labels"]))
            values["label_preservation/classifier_accuracy"] = float(
                np.mean(acc["orig_pred"] == acc["labels"]))
            details["label_preservation"] = {"images": n_test, "split": test.path,
                                             "classifier": classifier.tag}
        if "latent_probe" in need:
            t0 = time.time()
            tr = {"codes": [], "pixels": [], "labels": []}
            for x, y in train.batches(n_real, bs, labels=True):
                tr["codes"].append(model.encode(x))
                tr["pixels"].append(x.reshape(len(x), -1))
                tr["labels"].append(y)
            tr = {k: np.concatenate(v) for k, v in tr.items()}
            values.update(probe.latent_probe(tr["codes"], tr["pixels"], tr["labels"], acc["codes"],
                                             acc["pixels"], acc["labels"], seed))
            details["latent_probe"] = {"train": n_real, "test": n_test, "train_split": train.path,
                                       "test_split": test.path}
            timed("latent probe", t0)

    # -------- perceptual path lengths
    for m in [m for m in todo if m in ppl_lib.METRICS]:
        t0 = time.time()
        space, sampling = ppl_lib.METRICS[m]
        d = ppl_lib.path_distances(space, sampling, num_images, model.latent_size, lpips,
                                   generate=model.generate, mapping=model.map, decode=model.decode,
                                   crop=ppl_crop, batch_size=bs, seed=seed + 1)
        values[m] = ppl_lib.filtered_mean(d)
        details[m] = {"samples": num_images, "epsilon": ppl_lib.EPSILON, "crop": bool(ppl_crop),
                      "resolution": min(res, 256)}
        timed(m, t0)
    return {"metrics": values, "details": details, "notes": notes}


def _exists(path: str) -> bool:
    try:
        from alae_tf.data import describe

        describe(path)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------

def _fmt(value) -> str:
    if isinstance(value, list):
        return " ".join(f"{100 * v:.1f}%" for v in value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def markdown(record: dict) -> str:
    """The metrics as a markdown table (with the run, step and notes)."""
    lines = [f"# Evaluation of {record.get('model', '?')}", "",
             f"- model: `{record.get('model')}` ({record.get('kind')}), images seen "
             f"{record.get('step', 0)}",
             f"- data: `{record.get('data_dir')}`", "",
             "| metric | value | images |", "|---|---|---|"]
    details = record.get("details", {})
    for key, value in record.get("metrics", {}).items():
        d = details.get(key.split("/")[0], {})
        n = d.get("samples", d.get("images", d.get("test", "")))
        lines.append(f"| {key} | {_fmt(value)} | {n} |")
    notes = record.get("notes", [])
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: str, record: dict, tensorboard_dir: str | None = None) -> dict:
    """Merges ``record`` into out_dir/metrics.json (newer values win), rewrites metrics.md,
    and writes scalars eval/<key> at step ``record['step']``; returns the merged record."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, JSON_FILE)
    merged = {}
    if os.path.exists(path):
        try:
            with open(path) as fh:
                merged = json.load(fh)
        except (OSError, ValueError):
            merged = {}
    if merged.get("step") != record.get("step") or merged.get("model") != record.get("model"):
        merged = {}  # another checkpoint / model: start afresh
    merged_metrics = {**merged.get("metrics", {}), **record["metrics"]}
    merged_details = {**merged.get("details", {}), **record["details"]}
    notes = list(dict.fromkeys(merged.get("notes", []) + record["notes"]))
    merged = {**merged, **record, "metrics": merged_metrics, "details": merged_details, "notes": notes}
    for name, text in ((JSON_FILE, json.dumps(merged, indent=1)), (MD_FILE, markdown(merged))):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w") as fh:
            fh.write(text + ("" if text.endswith("\n") else "\n"))
        os.replace(tmp, os.path.join(out_dir, name))
    if tensorboard_dir:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(tensorboard_dir)
        with writer.as_default(step=int(record.get("step", 0))):
            for key, value in record["metrics"].items():
                if not isinstance(value, list):
                    tf.summary.scalar(f"eval/{key}", float(value))
        writer.flush()
        writer.close()
    return merged


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def _define_flags():
    from absl import flags

    flags.DEFINE_string("run_dir", None, "run directory of alae_tf.train")
    flags.DEFINE_string("saved_model", None, "SavedModel of alae_tf.export (instead of --run_dir)")
    flags.DEFINE_string("checkpoint", None, "checkpoint of --run_dir (default: the latest)")
    flags.DEFINE_string("data_dir", None, "dataset FOLDER/NAME of tfrecords_tools.convert (training split)")
    flags.DEFINE_string("test_data_dir", None, "held-out split (default: <data_dir>_test)")
    flags.DEFINE_list("metrics", [], f"metrics to compute: {', '.join(METRICS)}")
    flags.DEFINE_integer("num_images", 50000, "samples / images per metric (real splits: at most all)")
    flags.DEFINE_integer("batch_size", 64, "images per network call")
    flags.DEFINE_integer("seed", 0, "seed of the latents")
    flags.DEFINE_string("inception_weights", None, "local InceptionV3 weights file (no top); "
                        "default: Keras' 'imagenet' download (online only)")
    flags.DEFINE_string("lpips_weights", None, "VGG16-LPIPS weights .npz (docs/metrics.md)")
    flags.DEFINE_string("classifier", None, "domain classifier .keras (default <data_dir>.classifier.keras)")
    flags.DEFINE_bool("ppl_crop", False, "face crop before PPL's LPIPS (faces only; off for MNIST)")
    flags.DEFINE_string("output", None, "output folder (default RUN/eval or SAVED_MODEL_eval)")
    flags.DEFINE_bool("train_classifier", False, "train the domain classifier of --data_dir and exit")
    flags.DEFINE_integer("classifier_epochs", 3, "epochs of --train_classifier")
    flags.DEFINE_integer("resolution", 0, "--train_classifier resolution (default: the dataset's)")


def _read_all(split: Split, count: int, batch_size: int):
    xs, ys = zip(*split.batches(count, batch_size, labels=True))
    return np.concatenate(xs), np.concatenate(ys)


def train_classifier_cli(f) -> str:
    from alae_tf.data import describe
    from alae_tf.metrics import domain

    if not f.data_dir:
        raise ValueError("--train_classifier needs --data_dir=DATA (a labelled dataset)")
    try:
        info = describe(f.data_dir)
    except ValueError as e:
        raise ValueError(f"--data_dir={f.data_dir}: {str(e).splitlines()[0]}") from None
    res = f.resolution or info.resolution
    train = Split(f.data_dir, "--data_dir", res, info.channels)
    if not train.has_labels:
        raise ValueError(f"--data_dir={f.data_dir} has no labels: the domain classifier needs them")
    x, y = _read_all(train, train.count, 250)
    test_path = f.test_data_dir or default_test_dir(f.data_dir)
    if f.test_data_dir or _exists(test_path):
        test = Split(test_path, "--test_data_dir", res, info.channels)
        tx, ty = _read_all(test, test.count, 250)
    else:
        cut = len(x) - max(1, len(x) // 10)
        x, y, tx, ty = x[:cut], y[:cut], x[cut:], y[cut:]
        test_path = f"the last {len(tx)} images of --data_dir (no {default_test_dir(f.data_dir)})"
    clf, acc = domain.train_classifier(x, y, tx, ty, epochs=f.classifier_epochs, seed=f.seed)
    path = f.classifier or domain.default_path(f.data_dir)
    domain.save_classifier(clf, path)
    return (f"domain classifier ({res}x{res}, {clf.num_classes} classes, {len(x)} training "
            f"images, {f.classifier_epochs} epochs): test accuracy {acc:.4f} on {len(tx)} images "
            f"({test_path})\nwrote {path}")


def run_cli(f, log=print) -> dict:
    """Evaluates as the flags say; returns the merged record (also written to disk)."""
    metrics = parse_metrics(f.metrics)
    if bool(f.run_dir) == bool(f.saved_model):
        raise ValueError("pass exactly one of --run_dir=RUN and --saved_model=DIR")
    if not f.data_dir:
        raise ValueError("--data_dir is required (the dataset the model was trained on)")
    if f.run_dir:
        model = open_run(f.run_dir, f.checkpoint)
        out_dir = f.output or os.path.join(f.run_dir, EVAL_DIR)
        tb_dir = os.path.join(f.run_dir, "tensorboard")
        source = f.run_dir
    else:
        model = SavedModelModel(f.saved_model)
        out_dir = f.output or f.saved_model.rstrip("/") + "_eval"
        tb_dir = os.path.join(out_dir, "tensorboard")
        source = f.saved_model
    need = set(metrics)
    lpips = classifier = inception = None
    # Networks before any long computation: their errors (missing weights) come early.
    if need & LPIPS_METRICS:
        from alae_tf.metrics.lpips import LPIPS

        lpips = LPIPS.from_file(f.lpips_weights, f.batch_size)
    if need & DOMAIN_METRICS:
        from alae_tf.metrics.domain import default_path, load_classifier

        classifier = load_classifier(f.classifier or default_path(f.data_dir))
    if need & INCEPTION_METRICS:
        from alae_tf.metrics.fid import inception_network

        inception = inception_network(f.inception_weights)
    result = evaluate(model, metrics, f.data_dir, f.test_data_dir, num_images=f.num_images,
                      batch_size=f.batch_size, seed=f.seed, inception=inception, lpips=lpips,
                      classifier=classifier, ppl_crop=f.ppl_crop, log=log)
    record = {"model": os.path.abspath(source), "kind": model.name, "step": model.step,
              "data_dir": os.path.abspath(f.data_dir), "seed": f.seed, **result}
    merged = write_outputs(out_dir, record, tb_dir)
    merged["output"] = out_dir
    return merged


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    try:
        if len(argv) > 1:
            raise ValueError(f"unexpected arguments {' '.join(argv[1:])}")
        if FLAGS.train_classifier:
            print(train_classifier_cli(FLAGS))
            return
        merged = run_cli(FLAGS)
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        sys.exit(1)
    print(markdown(merged), end="")
    print(f"wrote {os.path.join(merged['output'], JSON_FILE)} and {MD_FILE}")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
