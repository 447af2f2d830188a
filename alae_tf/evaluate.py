"""Measures a trained model: FID, reconstruction FID, PPL, LPIPS, latent probes, domain metrics.

    python -m alae_tf.evaluate --run_dir=RUN [--data_dir=DATA] | --saved_model=DIR --data_dir=DATA
        --metrics=LIST [--num_images=50000 --test_data_dir=DATA_test --inception_weights=PATH
         --lpips_weights=PATH --classifier=PATH --ppl_crop --output=DIR --checkpoint=PATH]
    python -m alae_tf.evaluate --train_classifier --data_dir=DATA [--classifier=PATH]

Writes metrics.json and metrics.md into RUN/eval (or DIR_eval next to a SavedModel, or
--output), merging with earlier results there, and TensorBoard scalars eval/<metric>. A run is
evaluated on the dataset it recorded unless --data_dir is given. Metrics and file formats:
docs/metrics.md.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from alae_tf.inference import (SAVED_MODEL_FILE, Dataset, Model, dataset_exists, first_line, open_model,
                               recorded_data_dir)
from alae_tf.metrics import domain, fid, precision_recall, probe
from alae_tf.metrics import ppl as ppl_lib
from alae_tf.metrics.lpips import LPIPS, downsample_to

EVAL_DIR = "eval"
JSON_FILE, MD_FILE = "metrics.json", "metrics.md"


# ----------------------------------------------------------------------------------------------
# What the metrics share: a few passes over samples and splits, each run once on first use
# ----------------------------------------------------------------------------------------------

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


class Shared:
    """The passes of one evaluation. ``get(name)`` runs pass ``name`` once, computing the items
    that the metrics' ``uses`` ("name:item") ask of it:

    real / fake / rec: features ("inception", "domain", "classes") of the training split, of
    samples, of the training split's reconstructions; held: codes, pixels and labels of the
    held-out split, with "lpips", "mse" and "pred" (classifier's predictions); train: codes,
    pixels and labels of the training split."""

    def __init__(self, model: Model, uses: set[str], train: Dataset, test: Dataset | None,
                 n_real: int, num_images: int, batch_size: int, seed: int, inception, lpips,
                 classifier, ppl_crop: bool, log):
        self.model, self.uses, self.train, self.test, self.n_real = model, uses, train, test, n_real
        self.num_images, self.bs, self.seed, self.log = num_images, batch_size, seed, log
        self.ppl_crop = bool(ppl_crop)
        self.inception, self.lpips, self.classifier = inception, lpips, classifier
        self.features = {"inception": inception}
        if classifier is not None:
            self.features.update(domain=classifier.features, classes=classifier.predict)
        self.n_test = min(num_images, test.count) if test is not None else 0
        self._done: dict[str, dict] = {}

    def get(self, name: str) -> dict:
        if name not in self._done:
            items = {u.split(":")[1] for u in self.uses if u.startswith(name + ":")}
            t0 = time.time()
            self._done[name], label = getattr(self, "_" + name)(items)
            self.log(f"{label}: {time.time() - t0:.1f} s")
        return self._done[name]

    def real_batches(self):
        return (x for x, _ in self.train.batches(self.n_real, self.bs))

    def _real(self, items):
        nets = {"inception": self.inception, "domain": self.classifier and self.classifier.feature_net()}
        return {k: fid.cached_features(self.train.path, self.model.resolution, nets[k], self.n_real,
                                       lambda: np.concatenate(list(self.real_batches())), self.log)
                for k in items}, "real features"

    def _fake(self, items):
        z = _latent_batches(self.seed, self.num_images, self.model.latent_size, self.bs)
        return (_collect((self.model.generate(b) for b in z), {k: self.features[k] for k in items}),
                f"{self.num_images} samples")

    def _rec(self, items):
        return (_collect((self.model.reconstruct(x) for x in self.real_batches()),
                         {k: self.features[k] for k in items}), f"{self.n_real} reconstructions")

    def _held(self, items):
        acc = {k: [] for k in ("codes", "pixels", "labels", "lpips", "mse", "rec_pred", "orig_pred")}
        for x, y in self.test.batches(self.n_test, self.bs, labels=bool(items & {"pred", "codes"})):
            codes = self.model.encode(x)
            r = self.model.decode(codes) if items - {"codes"} else None
            if "mse" in items:
                acc["mse"].append(np.mean((np.asarray(r, np.float64) - x) ** 2, axis=(1, 2, 3)))
            if "lpips" in items:
                acc["lpips"].append(self.lpips(downsample_to(x), downsample_to(r)))
            if "pred" in items:
                acc["rec_pred"].append(self.classifier.predict(r))
                acc["orig_pred"].append(self.classifier.predict(x))
            acc["codes"].append(codes)
            acc["pixels"].append(x.reshape(len(x), -1))
            if y is not None:
                acc["labels"].append(y)
        return {k: np.concatenate(v) for k, v in acc.items() if v}, f"{self.n_test} held-out images"

    def _train(self, items):
        acc = {"codes": [], "pixels": [], "labels": []}
        for x, y in self.train.batches(self.n_real, self.bs, labels=True):
            acc["codes"].append(self.model.encode(x))
            acc["pixels"].append(x.reshape(len(x), -1))
            acc["labels"].append(y)
        return {k: np.concatenate(v) for k, v in acc.items()}, "latent probe"


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """A metric: what it reads of the shared passes, the networks it needs (of "inception",
    "lpips", "classifier"), whether the model must encode or map, and its computation
    (Shared -> ({key: value}, details))."""

    compute: Callable[[Shared], tuple[dict, dict]]
    uses: tuple[str, ...] = ()
    nets: tuple[str, ...] = ()
    encoder: bool = False
    mapping: bool = False


def _tag(s: Shared, space: str) -> str:
    return f"{space}:{(s.inception if space == 'inception' else s.classifier).tag}"


def _fid(space: str, source: str) -> Callable:
    def compute(s: Shared):
        value = fid.fid_of_features(s.get("real")[space], s.get(source)[space])
        if source == "fake":
            return value, {"samples": s.num_images, "reals": s.n_real, "features": _tag(s, space)}
        return value, {"images": s.n_real, "features": _tag(s, space)}
    return compute


def _precision_recall(space: str, name: str) -> Callable:
    def compute(s: Shared):
        pr = precision_recall.precision_recall(s.get("real")[space], s.get("fake")[space])
        return ({f"{name}/{k}": v for k, v in pr.items()},
                {"samples": s.num_images, "reals": s.n_real, "features": _tag(s, space),
                 "k": precision_recall.K})
    return compute


def _class_histogram(s: Shared):
    counts = np.bincount(s.get("fake")["classes"], minlength=s.classifier.num_classes)
    return (counts / s.num_images).tolist(), {"samples": s.num_images, "classifier": s.classifier.tag}


def _held_details(s: Shared, **extra) -> dict:
    return {"images": s.n_test, "split": s.test.path, **extra}


def _lpips(s: Shared):
    return (float(np.mean(s.get("held")["lpips"])),
            _held_details(s, resolution=min(s.model.resolution, 256)))


def _recon_mse(s: Shared):
    return float(np.mean(s.get("held")["mse"])), _held_details(s, pixels="[-1, 1]")


def _label_preservation(s: Shared):
    held = s.get("held")
    return ({"label_preservation": float(np.mean(held["rec_pred"] == held["labels"])),
             "label_preservation/classifier_accuracy": float(np.mean(held["orig_pred"] == held["labels"]))},
            _held_details(s, classifier=s.classifier.tag))


def _latent_probe(s: Shared):
    tr, te = s.get("train"), s.get("held")
    values = probe.latent_probe(tr["codes"], tr["pixels"], tr["labels"], te["codes"], te["pixels"],
                                te["labels"], s.seed)
    return values, {"train": s.n_real, "test": s.n_test, "train_split": s.train.path,
                    "test_split": s.test.path}


def _ppl(space: str, sampling: str) -> Callable:
    def compute(s: Shared):
        t0, m = time.time(), s.model
        d = ppl_lib.path_distances(space, sampling, s.num_images, m.latent_size, s.lpips,
                                   generate=m.generate, mapping=m.map, decode=m.decode,
                                   crop=s.ppl_crop, batch_size=s.bs, seed=s.seed + 1)
        s.log(f"ppl_{space}{sampling}: {time.time() - t0:.1f} s")
        return ppl_lib.filtered_mean(d), {"samples": s.num_images, "epsilon": ppl_lib.EPSILON,
                                          "crop": s.ppl_crop, "resolution": min(m.resolution, 256)}
    return compute


# name -> Metric, in the order of the outputs. A metric gives one value (its key: the name) or a
# dict of values under their keys ("name/part").
_INCEPTION, _DOMAIN = ("real:inception", "fake:inception"), ("real:domain", "fake:domain")
REGISTRY = {
    "fid": Metric(_fid("inception", "fake"), _INCEPTION, ("inception",)),
    "precision_recall": Metric(_precision_recall("inception", "precision_recall"), _INCEPTION,
                               ("inception",)),
    "domain_fid": Metric(_fid("domain", "fake"), _DOMAIN, ("classifier",)),
    "domain_precision_recall": Metric(_precision_recall("domain", "domain_precision_recall"),
                                      _DOMAIN, ("classifier",)),
    "class_histogram": Metric(_class_histogram, ("fake:classes",), ("classifier",)),
    "fid_rec": Metric(_fid("inception", "rec"), ("real:inception", "rec:inception"), ("inception",),
                      encoder=True),
    "domain_fid_rec": Metric(_fid("domain", "rec"), ("real:domain", "rec:domain"), ("classifier",),
                             encoder=True),
    "lpips": Metric(_lpips, ("held:lpips",), ("lpips",), encoder=True),
    "recon_mse": Metric(_recon_mse, ("held:mse",), encoder=True),
    "label_preservation": Metric(_label_preservation, ("held:pred",), ("classifier",), encoder=True),
    "latent_probe": Metric(_latent_probe, ("held:codes", "train:codes"), encoder=True),
    **{name: Metric(_ppl(space, sampling), (), ("lpips",), mapping=space == "w")
       for name, (space, sampling) in ppl_lib.METRICS.items()},
}
METRICS = tuple(REGISTRY)
NET_NAMES = {"inception": "an Inception network", "lpips": "LPIPS weights",
             "classifier": "a domain classifier"}


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


def default_test_dir(data_dir: str) -> str:
    return data_dir.rstrip("/") + "_test"


def held_out_split(data_dir: str, test_data_dir: str | None, resolution: int | None = None,
                   channels: int | None = None) -> Dataset | None:
    """--test_data_dir, else <data_dir>_test; None only when no held-out set exists at all. A
    held-out set that exists but cannot be read is an error, never replaced by --data_dir."""
    if test_data_dir:
        return Dataset(test_data_dir, resolution, channels, f"--test_data_dir={test_data_dir}")
    path = default_test_dir(data_dir)
    if not dataset_exists(path):
        return None
    try:
        return Dataset(path, resolution, channels, f"held-out set {path}")
    except ValueError as e:
        raise ValueError(f"{e}; not using --data_dir in its place: repair it or pass "
                         f"--test_data_dir=DATA") from None


def _runnable(model: Model, metrics: list[str], notes: list[str]) -> list[str]:
    """The metrics the model can be measured by; a note for each other."""
    todo = []
    for m in metrics:
        if REGISTRY[m].encoder and not model.has_encoder:
            notes.append(f"{m}: skipped, the model ({model.name}) has no encoder")
        elif REGISTRY[m].mapping and not model.has_mapping:
            notes.append(f"{m}: skipped, the model ({model.name}) has no mapping network (W space)")
        else:
            todo.append(m)
    return todo


def _check_networks(model: Model, todo: list[str], nets: dict, notes: list[str]):
    for net, what in NET_NAMES.items():
        lacking = sorted(m for m in todo if net in REGISTRY[m].nets)
        if lacking and nets[net] is None:
            raise ValueError(f"{', '.join(lacking)} need(s) {what}")
    clf = nets["classifier"]
    if any("classifier" in REGISTRY[m].nets for m in todo):
        if (clf.resolution, clf.channels) != (model.resolution, model.channels):
            raise ValueError(f"the domain classifier takes {clf.resolution}x{clf.resolution}x"
                             f"{clf.channels} images, the model makes {model.resolution}x"
                             f"{model.resolution}x{model.channels}: train one with "
                             f"--train_classifier --resolution={model.resolution}")
        notes.append(domain.NOT_COMPARABLE)


def _splits(model: Model, uses: set[str], data_dir: str, test_data_dir: str | None,
            num_images: int, notes: list[str]) -> tuple[Dataset, Dataset | None, int]:
    """The training split, the held-out split (None when no metric uses it) and the count of
    real images."""
    train = Dataset(data_dir, model.resolution, model.channels, f"--data_dir={data_dir}")
    n_real = min(num_images, train.count)
    if n_real < num_images and any(u.split(":")[0] in ("real", "fake", "rec") for u in uses):
        notes.append(f"real images: {n_real} (all of --data_dir), fewer than --num_images={num_images}")
    if not any(u.startswith("held:") for u in uses):
        return train, None, n_real
    test = held_out_split(data_dir, test_data_dir, model.resolution, model.channels)
    if test is None and "train:codes" in uses:
        raise ValueError(f"latent_probe needs a held-out split: {default_test_dir(data_dir)} does "
                         f"not exist; pass --test_data_dir=DATA")
    if test is None:
        test = train
        notes.append(f"no held-out split ({default_test_dir(data_dir)}): lpips / recon_mse / "
                     f"label_preservation use --data_dir")
    if uses & {"held:codes", "held:pred"} and not (train.has_labels and test.has_labels):
        raise ValueError(f"latent_probe / label_preservation need labels: {data_dir} or "
                         f"{test.path} has none")
    return train, test, n_real


def evaluate(model: Model, metrics: list[str], data_dir: str, test_data_dir: str | None = None, *,
             num_images: int = 50000, batch_size: int = 64, seed: int = 0, inception=None,
             lpips=None, classifier=None, ppl_crop: bool = False, log=print) -> dict:
    """Computes ``metrics`` of ``model``. inception: a fid.FeatureNet; lpips: an lpips.LPIPS;
    classifier: a domain.DomainClassifier; each is needed only by its metrics. Returns
    {"metrics": {key: value}, "details": {metric: {...}}, "notes": [...]}."""
    if num_images < 4:
        raise ValueError(f"--num_images must be at least 4, got {num_images}")
    values, details, notes = {}, {}, []
    todo = _runnable(model, metrics, notes)
    _check_networks(model, todo, {"inception": inception, "lpips": lpips, "classifier": classifier},
                    notes)
    uses = {u for m in todo for u in REGISTRY[m].uses}
    train, test, n_real = _splits(model, uses, data_dir, test_data_dir, num_images, notes)
    shared = Shared(model, uses, train, test, n_real, num_images, batch_size, seed, inception,
                    lpips, classifier, ppl_crop, log)
    for name in [m for m in REGISTRY if m in todo]:
        value, details[name] = REGISTRY[name].compute(shared)
        values.update(value if isinstance(value, dict) else {name: value})
    return {"metrics": values, "details": details, "notes": notes}


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
    flags.DEFINE_string("data_dir", None, "dataset FOLDER/NAME of tfrecords_tools.convert (training "
                        "split; default for --run_dir: the run's, from RUN/flags.txt)")
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


def train_classifier_cli(f) -> str:
    if not f.data_dir:
        raise ValueError("--train_classifier needs --data_dir=DATA (a labelled dataset)")
    train = Dataset(f.data_dir, f.resolution or None, None, f"--data_dir={f.data_dir}")
    if not train.has_labels:
        raise ValueError(f"--data_dir={f.data_dir} has no labels: the domain classifier needs them")
    res = train.resolution
    x, y = train.arrays(train.count)
    test = held_out_split(f.data_dir, f.test_data_dir, res, train.info.channels)
    if test is not None:
        (tx, ty), test_path = test.arrays(test.count), test.path
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
    if f.run_dir and not os.path.isdir(f.run_dir):
        raise ValueError(f"--run_dir={f.run_dir}: no such directory")
    if f.saved_model and not os.path.exists(os.path.join(f.saved_model, SAVED_MODEL_FILE)):
        raise ValueError(f"--saved_model={f.saved_model}: not a SavedModel (no {SAVED_MODEL_FILE})")
    if not f.data_dir and not f.run_dir:
        raise ValueError("--data_dir is required with --saved_model (the dataset the model was "
                         "trained on)")
    data_dir = f.data_dir or recorded_data_dir(f.run_dir)
    source = f.run_dir or f.saved_model
    model = open_model(source, f.checkpoint if f.run_dir else None)
    out_dir = f.output or (os.path.join(f.run_dir, EVAL_DIR) if f.run_dir
                           else f.saved_model.rstrip("/") + "_eval")
    tb_dir = os.path.join(f.run_dir or out_dir, "tensorboard")
    nets = {n for m in metrics for n in REGISTRY[m].nets}
    lpips = classifier = inception = None
    # Networks before any long computation: their errors (missing weights) come early.
    if "lpips" in nets:
        lpips = LPIPS.from_file(f.lpips_weights, f.batch_size)
    if "classifier" in nets:
        classifier = domain.load_classifier(f.classifier or domain.default_path(data_dir))
    if "inception" in nets:
        inception = fid.inception_network(f.inception_weights)
    result = evaluate(model, metrics, data_dir, f.test_data_dir, num_images=f.num_images,
                      batch_size=f.batch_size, seed=f.seed, inception=inception, lpips=lpips,
                      classifier=classifier, ppl_crop=f.ppl_crop, log=log)
    record = {"model": os.path.abspath(source), "kind": model.kind, "step": model.step,
              "data_dir": os.path.abspath(data_dir), "seed": f.seed, **result}
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
        print(f"error: {first_line(e)}", file=sys.stderr)
        sys.exit(1)
    print(markdown(merged), end="")
    print(f"wrote {os.path.join(merged['output'], JSON_FILE)} and {MD_FILE}")


def run():
    from tfrecords_tools import cli

    _define_flags()
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
