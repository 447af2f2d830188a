"""Prints the markdown table of docs/results.md from the runs of benchmarks/results_mnist5k.sh.

    python benchmarks/results_table.py runs/results
"""
from __future__ import annotations

import json
import os
import sys

ORDER = ["quickstart", "quickstart400", "alae_style", "ae", "dae", "sae", "vae", "vaegan", "dcgan", "stylegan"]
COLUMNS = [("domain_fid", "domain FID (samples)", "{:.1f}"), ("domain_fid_rec", "domain FID (rec.)", "{:.1f}"),
           ("latent_probe/codes/1nn", "1-NN codes", "{:.3f}"), ("latent_probe/codes/svm", "SVM codes", "{:.3f}"),
           ("recon_mse", "rec. MSE", "{:.4f}"), ("label_preservation", "labels kept", "{:.3f}")]


def times(folder: str) -> dict[str, str]:
    """model -> training seconds, from times.txt ("model: trained in N s")."""
    out = {}
    path = os.path.join(folder, "times.txt")
    if os.path.exists(path):
        for line in open(path):
            name, _, rest = line.partition(": trained in ")
            out[name.strip()] = rest.split()[0] if rest else ""
    return out


def main(folder: str):
    seconds = times(folder)
    header = ["run", "model", "kimg", "train s", *(title for _, title, _ in COLUMNS)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    pixels = None
    for name in ORDER:
        path = os.path.join(folder, name, "eval", "metrics.json")
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            result = json.load(fh)
        values = result["metrics"]
        pixels = pixels or {k: values.get(f"latent_probe/pixels/{k}") for k in ("1nn", "svm")}
        cells = [name, result["kind"], f"{result['step'] / 1000:.0f}", seconds.get(name, "")]
        cells += ["n/a" if key not in values else fmt.format(values[key]) for key, _, fmt in COLUMNS]
        print("| " + " | ".join(cells) + " |")
    if pixels:
        print(f"| raw pixels | - | - | - | - | - | {pixels['1nn']:.3f} | {pixels['svm']:.3f} | - | - |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/results")
