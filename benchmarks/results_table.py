"""The docs/results.md tables from the runs of benchmarks/results_mnist5k.sh.

    python benchmarks/results_table.py runs/results [--grids=docs/results]
    python benchmarks/results_table.py --checkpoint_at=MINUTES RUN.train.log

The first form prints the tables (and copies each run's last sample and reconstruction grids into
--grids); the second prints the last checkpoint a training log saved within MINUTES of training.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sys

from absl import app, flags

EQUAL_TIME = ["stylealae", "stylegan", "alae_mlp", "dcgan", "vae", "vaegan", "ae", "dae", "sae", "rae", "ae_greedy"]
BY_TIME = ["stylealae", "stylealae_10min", "stylealae_20min", "stylegan", "stylegan_20min"]
COLUMNS = [("domain_fid", "domain FID (samples)", "{:.1f}"), ("domain_fid_rec", "domain FID (rec.)", "{:.1f}"),
           ("latent_probe/codes/1nn", "1-NN codes", "{:.3f}"), ("latent_probe/codes/svm", "SVM codes", "{:.3f}"),
           ("recon_mse", "rec. MSE", "{:.4f}"), ("label_preservation", "labels kept", "{:.3f}")]
_LINE = re.compile(r"^[IWE]\d{4} (\d\d:\d\d:\d\d\.\d+) .*?\] (.*)$")


def log_events(path: str) -> tuple[datetime.datetime | None, list[tuple[float, str]]]:
    """(start of training, [(seconds after it, checkpoint path)]) of a training log.

    Training starts at the first "LOD n (..)" line; checkpoints are the "saved PATH" lines.
    """
    start, saved, day = None, [], 0
    last = None
    with open(path) as fh:
        for line in fh:
            m = _LINE.match(line)
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%H:%M:%S.%f") + datetime.timedelta(days=day)
            if last and t < last:  # past midnight
                day += 1
                t += datetime.timedelta(days=1)
            last = t
            message = m.group(2)
            if start is None and re.match(r"LOD \d+ \(", message):
                start = t
            elif start is not None and message.startswith("saved "):
                saved.append(((t - start).total_seconds(), message[len("saved "):].strip()))
    return start, saved


def checkpoint_at(log: str, minutes: float) -> str:
    """The last checkpoint saved within ``minutes`` of training."""
    _, saved = log_events(log)
    within = [path for seconds, path in saved if seconds <= minutes * 60]
    if not within:
        raise SystemExit(f"error: {log}: no checkpoint saved within {minutes} minutes of training")
    return within[-1]


def _row(folder: str, name: str) -> dict | None:
    path = os.path.join(folder, f"{name}.eval", "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        result = json.load(fh)
    run = name[: -len("_10min")] + "_20min" if name.endswith("_10min") else name
    _, saved = log_events(os.path.join(folder, f"{run}.train.log"))
    step = int(result["step"])
    seconds = next((s for s, p in saved if p.endswith(f"ckpt-{step}")), None)
    return dict(name=name, run=run, kind=result["kind"], step=step, seconds=seconds, values=result["metrics"])


def table(rows: list[dict]) -> list[str]:
    header = ["run", "model", "minutes", "kimg", *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    pixels = None
    for r in rows:
        values = r["values"]
        pixels = pixels or {k: values.get(f"latent_probe/pixels/{k}") for k in ("1nn", "svm")}
        minutes = "" if r["seconds"] is None else f"{r['seconds'] / 60:.1f}"
        cells = [r["name"], r["kind"], minutes, f"{r['step'] / 1000:.0f}"]
        cells += ["n/a" if key not in values else fmt.format(values[key]) for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    if pixels and pixels["1nn"] is not None:
        lines.append(f"| raw pixels | - | - | - | - | - | {pixels['1nn']:.3f} | {pixels['svm']:.3f} | - | - |")
    return lines


def copy_grids(folder: str, rows: list[dict], grids: str):
    """RUN_samples.png and RUN_reconstructions.png of each row's checkpoint, into ``grids``."""
    os.makedirs(grids, exist_ok=True)
    for r in rows:
        for kind in ("samples", "reconstructions"):
            src = os.path.join(folder, r["run"], "images", f"{kind}_{r['step'] // 1000:06d}kimg.png")
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(grids, f"{r['name']}_{kind}.png"))


def _define_flags():
    flags.DEFINE_float("checkpoint_at", None, "minutes of training")
    flags.DEFINE_string("grids", None, "folder to copy the grids into")


def main(argv):
    f = flags.FLAGS
    if len(argv) != 2:
        sys.exit("error: give one results folder, or a training log with --checkpoint_at")
    path = argv[1]
    if f.checkpoint_at is not None:
        print(checkpoint_at(path, f.checkpoint_at))
        return
    for title, names in (("Equal wall time", EQUAL_TIME), ("StyleALAE and StyleGAN mode by training time", BY_TIME)):
        rows = [r for r in (_row(path, n) for n in names) if r]
        print(f"\n### {title}\n")
        print("\n".join(table(rows)))
        if f.grids:
            copy_grids(path, rows, f.grids)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
