"""Attribute directions in W: the unit normal of a linear classifier fitted on encoder codes.

    python -m alae_tf.directions --run_dir=RUN [--data_dir=DATA] [--attribute=NAME ...]
        [--labels=FILE.csv] [--num_images=N] [--c=0.001] [--checkpoint=PATH]

For each attribute (a class of the dataset's labels, one-vs-rest, or a column of --labels) it
encodes the images, fits a logistic regression on the codes w = E(x) of 80 % of them, measures
its balanced accuracy on the other 20 %, and writes the unit normal of its decision plane to
``RUN/directions/NAME.json``. Moving a code by ``t * scale * vector`` (``scale``: the codes'
standard deviation along the direction) and decoding edits the image towards the attribute
(t > 0) or away from it. With class labels and the dataset's domain classifier
(``DATA.classifier.keras``, alae_tf.evaluate --train_classifier) it also reports how often
moving held-out images of other classes along a class's direction makes the classifier see
that class. See docs/editing.md.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import sys

import numpy as np

from alae_tf.inference import Dataset, Model, first_line, open_model, recorded_data_dir

DIRECTORY = "directions"  # inside the run directory
TEST_FRACTION = 0.2
# Strong regularization keeps the normal near the difference of the class means, along which
# the decoder changes the image; a weakly regularized normal classifies better but leans on
# directions the decoder ignores (docs/editing.md has the measurements).
DEFAULT_C = 1e-3
TRANSFER_STEPS = (1.0, 2.0, 4.0)  # the class-transfer report: steps in units of ``scale``
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "-1", "false", "no", "n", "f"}


@dataclasses.dataclass
class Direction:
    """A unit vector in W; ``scale``: the codes' standard deviation along it; ``accuracy``: the
    classifier's accuracy on the held-out codes (``test_count``), ``positives`` of ``count``
    codes had the attribute."""
    name: str
    vector: np.ndarray
    scale: float
    accuracy: float
    count: int
    test_count: int
    positives: int
    source: str = ""

    def move(self, w: np.ndarray, t) -> np.ndarray:
        """Codes ``w`` (N, latent) moved ``t`` (a number or N numbers) scales along the direction."""
        t = np.asarray(t, np.float32).reshape(-1, 1)
        return (np.asarray(w, np.float32) + t * self.scale * self.vector[None]).astype(np.float32)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["vector"] = [float(v) for v in self.vector]
        return d

    @classmethod
    def from_json(cls, d: dict, where: str) -> "Direction":
        try:
            fields = {f.name for f in dataclasses.fields(cls)}
            d = {k: v for k, v in d.items() if k in fields}
            out = cls(**d)
            out.vector = np.asarray(out.vector, np.float32)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: not a direction file ({first_line(e)})") from None
        if out.vector.ndim != 1 or not np.isfinite(out.vector).all() or out.scale <= 0:
            raise ValueError(f"{where}: not a direction file (bad vector or scale)")
        return out


def safe_name(name: str) -> str:
    """A file name for an attribute name: letters, digits, '-', '_' and '.' kept."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._")
    if not out:
        raise ValueError(f"attribute name {name!r} has no letter or digit")
    return out


def save(folder: str, directions: list[Direction]) -> list[str]:
    """Writes each direction to ``folder/NAME.json`` (atomically); returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for d in directions:
        path = os.path.join(folder, safe_name(d.name) + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(d.to_json(), f, indent=1)
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


def load(path: str, latent_size: int | None = None) -> dict[str, Direction]:
    """The directions of a run directory (its ``directions/``) or of a folder of direction
    files, by name; empty when there are none."""
    folder = os.path.join(path, DIRECTORY) if os.path.isdir(os.path.join(path, DIRECTORY)) else path
    out = {}
    if not os.path.isdir(folder):
        return out
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".json"):
            continue
        where = os.path.join(folder, fn)
        try:
            with open(where) as f:
                d = Direction.from_json(json.load(f), where)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not a direction file ({first_line(e)})") from None
        if latent_size is not None and d.vector.shape[0] != latent_size:
            raise ValueError(f"{where}: a direction of {d.vector.shape[0]} dimensions, the model's "
                             f"codes have {latent_size}")
        out[d.name] = d
    return out


# ----------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------

def split(count: int, seed: int = 0, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of a fixed random split."""
    order = np.random.RandomState(seed).permutation(count)
    n_test = max(1, int(round(count * test_fraction)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def fit(name: str, codes: np.ndarray, target: np.ndarray, c: float = DEFAULT_C, seed: int = 0,
        source: str = "") -> Direction:
    """The direction of attribute ``name`` (``target``: bool per code): the unit normal of an L2
    logistic regression (scikit-learn's ``C`` = ``c``, classes weighted to balance) on the codes,
    pointing to the attribute; ``accuracy``: its balanced accuracy on the held-out codes."""
    from sklearn.linear_model import LogisticRegression

    codes = np.asarray(codes, np.float64)
    target = np.asarray(target, bool)
    if codes.ndim != 2 or len(codes) != len(target):
        raise ValueError(f"{name}: {len(target)} labels for codes of shape {codes.shape}")
    if not c > 0:
        raise ValueError(f"--c={c}: must be > 0")
    positives = int(target.sum())
    if positives < 2 or positives > len(target) - 2:
        raise ValueError(f"attribute {name!r}: {positives} of {len(target)} images have it; a "
                         f"direction needs at least 2 with and 2 without")
    train, test = split(len(codes), seed)
    if target[train].all() or not target[train].any():
        raise ValueError(f"attribute {name!r}: the training split has one value only")
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
    clf.fit(codes[train], target[train])
    pred, truth = clf.predict(codes[test]), target[test]
    recalls = [np.mean(pred[truth == v] == v) for v in (True, False) if np.any(truth == v)]
    vector = clf.coef_[0] / np.linalg.norm(clf.coef_[0])
    scale = float(np.std(codes @ vector))
    return Direction(name=name, vector=vector.astype(np.float32), scale=scale,
                     accuracy=float(np.mean(recalls)), count=len(codes), test_count=len(test),
                     positives=positives, source=source)


def class_names(labels: np.ndarray, names: list[str] | None = None) -> dict[int, str]:
    """{class: attribute name} of the classes in ``labels``: ``names[k]`` or 'class_K'."""
    return {int(k): str(names[k]) if names and k < len(names) else f"class_{int(k)}"
            for k in np.unique(np.asarray(labels))}


def class_targets(labels: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """One-vs-rest targets of integer class labels, by class_names."""
    labels = np.asarray(labels)
    return {name: labels == k for k, name in class_names(labels, names).items()}


def read_labels_file(path: str, count: int, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Attribute columns of a CSV labels file, as bool arrays over the dataset's ``count`` images.

    The header's first column keys the rows: an image index (0-based, the dataset's order) or a
    file name (needs ``names``, the dataset's image names in order). Values: 1 / true / yes for
    the attribute, 0 / -1 / false / no against (CelebA's -1 / 1 work as they are). Rows may be
    separated by commas or, as CelebA's list_attr_celeba.txt, by spaces. Every image needs a row.
    """
    try:
        with open(path, newline="") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"--labels={path}: {e.strerror}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].strip().isdigit() and len(lines[0].split()) == 1:
        lines = lines[1:]  # CelebA's first line: the image count
    commas = bool(lines) and "," in lines[0]
    rows = list(csv.reader(lines)) if commas else [line.split() for line in lines]
    if len(rows) < 2:
        raise ValueError(f"--labels={path}: no header and rows")
    header, rows = rows[0], rows[1:]
    if not commas and len(rows[0]) == len(header) + 1:  # CelebA: the header has no key column
        header = ["image"] + header
    attrs = [h.strip() for h in header[1:]]
    if not attrs:
        raise ValueError(f"--labels={path}: no attribute columns after the key column")
    index_of = {n: i for i, n in enumerate(names)} if names else None
    values = np.full((count, len(attrs)), -1, np.int8)
    for line_no, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"--labels={path} line {line_no}: {len(row)} columns, the header has "
                             f"{len(header)}")
        key = row[0].strip()
        if key.isdigit():
            i = int(key)
        elif index_of is not None and key in index_of:
            i = index_of[key]
        elif index_of is None:
            raise ValueError(f"--labels={path} line {line_no}: {key!r} is not an image index, and "
                             f"the dataset records no image names to match file names against")
        else:
            raise ValueError(f"--labels={path} line {line_no}: no image named {key!r} in the dataset")
        if i >= count:
            continue  # beyond the images used (--num_images)
        for j, v in enumerate(row[1:]):
            v = v.strip().lower()
            if v not in _TRUE and v not in _FALSE:
                raise ValueError(f"--labels={path} line {line_no}, column {attrs[j]!r}: {v!r} is "
                                 f"not 1/0/-1/true/false/yes/no")
            values[i, j] = v in _TRUE
    missing = np.flatnonzero((values < 0).any(1))
    if len(missing):
        raise ValueError(f"--labels={path}: no row for {len(missing)} of the {count} images (first: "
                         f"image {missing[0]})")
    return {a: values[:, j].astype(bool) for j, a in enumerate(attrs)}


def class_transfer(model: Model, directions: dict[str, Direction], classes: dict[int, str],
                   images: np.ndarray, labels: np.ndarray, predict, steps=TRANSFER_STEPS) -> dict:
    """For each step t: the fraction of images of other classes that ``predict`` assigns class
    k after their code moved t scales along class k's direction, over every class k; and the
    same for t = 0 (the reconstructions), the baseline."""
    w = model.encode(images)
    out = {}
    for t in (0.0,) + tuple(steps):
        hits = total = 0
        for k, name in classes.items():
            if name not in directions:
                continue
            others = labels != k
            moved = directions[name].move(w[others], t)
            hits += int(np.sum(predict(model.decode(moved)) == k))
            total += int(others.sum())
        out[float(t)] = hits / max(total, 1)
    return out


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def _define_flags():
    from absl import flags

    flags.DEFINE_string("run_dir", None, "run directory of alae_tf.train (the directions go to RUN/directions)")
    flags.DEFINE_string("checkpoint", None, "checkpoint of the run (default: the latest)")
    flags.DEFINE_string("data_dir", None, "dataset FOLDER/NAME (default: the run's)")
    flags.DEFINE_multi_string("attribute", None, "attributes to fit (default: every one found)")
    flags.DEFINE_string("labels", None, "CSV labels file: image index or file name, attribute columns")
    flags.DEFINE_integer("num_images", 10000, "images of the dataset to encode (the first N)")
    flags.DEFINE_integer("seed", 0, "seed of the train / held-out split")
    flags.DEFINE_float("c", DEFAULT_C, "the logistic regression's C (scikit-learn): smaller edits "
                       "better, larger classifies better (docs/editing.md)")
    flags.DEFINE_string("classifier", None, "domain classifier for the class-transfer report "
                        "(default DATA.classifier.keras when it exists)")


def image_names(info) -> list[str] | None:
    """The dataset's image names in order, where the converter recorded them."""
    from tfrecords_tools.format import read_names

    return read_names(os.path.join(info.directory, info.name))


def label_names(info) -> list[str] | None:
    return (info.manifest or {}).get("label_names")


def run_cli(f, log=print) -> dict[str, Direction]:
    if not f.run_dir:
        raise ValueError("--run_dir is required")
    if not os.path.isdir(f.run_dir):
        raise ValueError(f"--run_dir={f.run_dir}: no such directory")
    if f.num_images < 10:
        raise ValueError(f"--num_images={f.num_images}: need at least 10")
    data_dir = f.data_dir or recorded_data_dir(f.run_dir)
    model = open_model(f.run_dir, f.checkpoint)
    if not model.has_encoder:
        raise ValueError(f"directions need an encoder: the {model.name} model has none")
    data = Dataset(data_dir, model.resolution, model.channels, f"--data_dir={data_dir}")
    count = min(f.num_images, data.count)
    if f.labels:
        targets = read_labels_file(f.labels, count, image_names(data.info))
        source = os.path.basename(f.labels)
    elif data.has_labels:
        targets = class_targets(data.arrays(count)[1], label_names(data.info))
        source = "class labels"
    else:
        raise ValueError(f"--data_dir={data_dir} has no labels: pass --labels=FILE.csv")
    if f.attribute:
        unknown = [a for a in f.attribute if a not in targets]
        if unknown:
            raise ValueError(f"--attribute={unknown[0]}: not among {', '.join(list(targets)[:12])}"
                             f"{' ...' if len(targets) > 12 else ''}")
        targets = {a: targets[a] for a in f.attribute}
    log(f"encoding {count} images of {data_dir} at {model.resolution}x{model.resolution}")
    images, labels = data.arrays(count)
    codes = np.concatenate([model.encode(images[i:i + 250]) for i in range(0, count, 250)])
    directions = [fit(name, codes, t, f.c, f.seed, source) for name, t in targets.items()]
    paths = save(os.path.join(f.run_dir, DIRECTORY), directions)
    for d, p in zip(directions, paths):
        log(f"{d.name}: held-out balanced accuracy {d.accuracy:.3f} ({d.test_count} codes, {d.positives} "
            f"of {d.count} with it), scale {d.scale:.3f} -> {p}")
    if not f.labels and data.has_labels:
        _report_transfer(f, data_dir, model, {d.name: d for d in directions},
                         class_names(labels, label_names(data.info)), images, labels, codes, log)
    return {d.name: d for d in directions}


def _report_transfer(f, data_dir, model, directions, classes, images, labels, codes, log):
    """The class transfer on the first 500 images of the held-out set DATA_test where it exists
    (never seen in training), else on the codes held out from the fit."""
    from alae_tf.inference import dataset_exists
    from alae_tf.metrics import domain

    path = f.classifier or domain.default_path(data_dir)
    if not os.path.isfile(path):
        log(f"(no domain classifier at {path}: no class-transfer report)")
        return
    clf = domain.load_classifier(path)
    test_dir = data_dir.rstrip("/") + "_test"
    if dataset_exists(test_dir):
        held = Dataset(test_dir, model.resolution, model.channels, test_dir)
        images, labels = held.arrays(min(500, held.count))
        where = f"{len(images)} images of {test_dir}"
    else:
        _, test = split(len(codes), f.seed)
        images, labels = images[test[:500]], labels[test[:500]]
        where = f"{len(images)} images held out from the fit"
    rates = class_transfer(model, directions, classes, images, labels, clf.predict)
    log(f"class transfer on {where}: the fraction of images of other classes that the domain "
        f"classifier assigns the direction's class after the move")
    for t, r in rates.items():
        log(f"  step {t:+.1f} x scale: {r:.3f}")


def main(argv):
    from absl import flags

    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(1)
    try:
        run_cli(flags.FLAGS)
    except (ValueError, OSError) as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
        sys.exit(1)


def run():
    from tfrecords_tools import cli

    _define_flags()
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
