"""python -m tfrecords_tools.inspect_records DIR_OR_PATTERN: describe and check multi-LOD datasets.

Reads datasets written by tfrecords_tools.convert (with a manifest), by StyleGAN's dataset_tool
(NAME-rXX.tfrecords, no label) and by the ALAE release (NAME-rXX.tfrecords.NNN, labels).
Prints per level: resolution, parts, records, channels, labels, bytes; then checks

  * parts numbered without gaps, manifest (if any) matching (a dataset may hold only some
    levels: the release's held-out sets hold only the top one);
  * every level holds the same number of records;
  * every record: TFRecord framing and CRCs (TensorFlow), a tf.train.Example with
    shape [C, 2**r, 2**r] and as many data bytes (skipped with --quick);
  * a sample of records: where levels r and r-1 are both present, level r-1 equals the 2x2 box filter of level r within 1 grey level
    (rounding of two levels; exact for the unrounded values).

Exit status 0 when every check passes, 1 otherwise (the first problem, naming the file and
the record index, goes to stderr as "error: ...").

  python -m tfrecords_tools.inspect_records data/mnist5k
  python -m tfrecords_tools.inspect_records 'data/ffhq/ffhq-r*.tfrecords' --samples 4 --quick
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from tfrecords_tools import format as fmt
from tfrecords_tools.writer import box_down

BOX_TOLERANCE = 1.0


class _Level:
    def __init__(self, level, files):
        self.level, self.files = level, files
        self.records = []  # per file, None when unreadable
        self.frames = {}
        self.channels = None
        self.has_labels = None
        self.bytes = sum(os.path.getsize(f) for f in files if os.path.exists(f))

    @property
    def count(self):
        return None if None in self.records else sum(self.records)

    def record(self, index):
        for f, n in zip(self.files, self.records):
            if index < n:
                with open(f, "rb") as fh:
                    off, length = self.frames[f][index]
                    return f, index, fmt.read_record(fh, off, length)
            index -= n
        raise IndexError(index)


def inspect_dataset(directory: str, name: str, *, samples: int = 8, full: bool = True,
                    seed: int = 0) -> dict:
    """Report of one dataset: {'name', 'directory', 'manifest', 'levels': [rows],
    'checks': [(ok, message)], 'problems': [message naming file and record]}."""
    prefix = os.path.join(directory, name)
    checks, problems = [], []

    def check(ok, message, problem=None):
        checks.append((bool(ok), message))
        if not ok:
            problems.append(problem or message)

    listed = fmt._list_level_files(directory).get(name, {})
    mpath = fmt.manifest_path(directory, name)
    manifest = None
    if os.path.isfile(mpath):
        try:
            manifest = fmt.read_manifest(mpath)
        except fmt.DatasetError as e:
            check(False, str(e))
    levels = {}
    gaps = False  # a level misses parts: its records do not line up with the other levels'
    for r in sorted(listed):
        parts = listed[r]
        if None in parts and len(parts) > 1:
            check(False, f"{prefix}: level r{r:02d} has both a single file and part files")
            continue
        if None in parts:
            files = [parts[None]]
        else:
            idx = sorted(parts)
            if idx != list(range(len(idx))):
                missing = sorted(set(range(max(idx) + 1)) - set(idx))
                check(False, f"{prefix}: level r{r:02d} misses part(s) "
                             f"{', '.join('%03d' % m for m in missing)}")
                gaps = True
            files = [parts[i] for i in idx]
        levels[r] = _Level(r, files)
    if not levels:
        check(False, f"{prefix}: no level files {name}-rXX.tfrecords[.NNN]")
        return {"name": name, "directory": directory, "manifest": manifest, "levels": [],
                "checks": checks, "problems": problems}

    for lv in levels.values():
        for f in lv.files:
            try:
                lv.frames[f] = fmt.scan_records(f)
                lv.records.append(len(lv.frames[f]))
            except fmt.DatasetError as e:
                lv.records.append(None)
                check(False, str(e))
        for f, n in zip(lv.files, lv.records):
            if n:
                with open(f, "rb") as fh:
                    off, length = lv.frames[f][0]
                    try:
                        fields = fmt.decode_example(fmt.read_record(fh, off, length))
                        lv.channels = (fields.get(fmt.KEY_SHAPE) or [None])[0]
                        lv.has_labels = fmt.KEY_LABEL in fields
                    except fmt.DatasetError as e:
                        check(False, f"{f}: record 0: {e}")
                break

    top = max(levels)
    absent = [r for r in range(fmt.MIN_LEVEL, top + 1) if r not in levels]
    check(True, f"levels {', '.join('r%02d' % r for r in levels)} present" + (
        f" ({', '.join('r%02d' % r for r in absent)} absent: read at the levels it has)"
        if absent else ""))

    counts = {r: lv.count for r, lv in levels.items()}
    if manifest is not None:
        bad = []
        for r, lv in levels.items():
            entries = manifest["files"].get(str(r), [])
            want = {e["file"]: e for e in entries}
            for f, n in zip(lv.files, lv.records):
                e = want.get(os.path.basename(f))
                if e is None:
                    bad.append(f"{f}: not listed in {mpath}")
                elif n is not None and int(e["records"]) != n:
                    bad.append(f"{f}: {n} records, manifest says {e['records']}")
                elif "bytes" in e and os.path.getsize(f) != int(e["bytes"]):
                    bad.append(f"{f}: {os.path.getsize(f)} bytes, manifest says {e['bytes']}")
            for fn in set(want) - {os.path.basename(f) for f in lv.files}:
                bad.append(f"{os.path.join(directory, fn)}: listed in the manifest, missing")
        same = set(counts.values())
        meta = fmt.manifest_mismatch(manifest, list(levels),
                                     same.pop() if len(same) == 1 else None,
                                     levels[top].channels, levels[top].has_labels)
        if meta:
            bad.append(f"{mpath}: {meta}")
        for problem in bad:
            check(False, problem)
        if not bad:
            check(True, "manifest matches the files")

    if None not in counts.values():
        mismatch = fmt.count_mismatch(prefix, {r: lv.files for r, lv in levels.items()},
                                      {r: lv.records for r, lv in levels.items()})
        check(not mismatch, mismatch or f"every level holds {counts[top]} records")
    channels = levels[top].channels
    has_labels = levels[top].has_labels

    if full and channels:
        total = 0
        for r, lv in sorted(levels.items()):
            problem = fmt.verify_files(lv.files, (channels, 2 ** r, 2 ** r), bool(has_labels))
            if problem:
                check(False, problem)
                break
            total += lv.count or 0
        else:
            check(True, f"all {total} records read: CRCs, Example protos, shapes "
                        f"[{channels}, 2**r, 2**r] and data lengths valid")

    count = min((c for c in counts.values() if c is not None), default=0)
    pairs = [r for r in sorted(levels) if r - 1 in levels]
    if samples > 0 and count > 0 and pairs and not gaps and None not in counts.values():
        rng = np.random.default_rng(seed)
        picks = sorted(set(np.linspace(0, count - 1, min(samples, count)).astype(int).tolist())
                       | set(rng.integers(0, count, min(samples, count)).tolist()))[:samples]
        worst, exact, n_px, failed = 0.0, 0, 0, None
        try:
            for r in pairs:
                for i in picks:
                    f_hi, j_hi, rec_hi = levels[r].record(i)
                    f_lo, j_lo, rec_lo = levels[r - 1].record(i)
                    hi, _ = fmt.fields_to_image(fmt.decode_example(rec_hi))
                    lo, _ = fmt.fields_to_image(fmt.decode_example(rec_lo))
                    ref = box_down(hi.transpose(1, 2, 0).astype(np.float64)).transpose(2, 0, 1)
                    if ref.shape != lo.shape:
                        failed = (f"{f_lo}: record {j_lo}: shape {list(lo.shape)} is not half of "
                                  f"{f_hi} record {j_hi} {list(hi.shape)}")
                        break
                    d = np.abs(lo.astype(np.float64) - ref)
                    worst = max(worst, float(d.max()))
                    exact += int((lo == np.clip(np.rint(ref), 0, 255)).sum())
                    n_px += lo.size
                    if d.max() > BOX_TOLERANCE and failed is None:
                        failed = (f"{f_lo}: record {j_lo} is not the 2x2 box filter of {f_hi} "
                                  f"record {j_hi} (max difference {d.max():.2f} grey levels)")
                if failed:
                    break
        except (fmt.DatasetError, KeyError, ValueError, IndexError) as e:
            failed = f"box-filter sample unreadable: {e}"
        if failed:
            check(False, failed)
        else:
            check(True, f"box filter: {len(picks)} records x {len(pairs)} level pairs, "
                        f"max |r-1 - box(r)| = {worst:.2f} <= {BOX_TOLERANCE:g} "
                        f"({100.0 * exact / max(n_px, 1):.1f}% of pixels exact)")

    rows = [{"level": r, "resolution": 2 ** r, "parts": len(lv.files), "records": lv.count,
             "channels": lv.channels, "labels": lv.has_labels, "bytes": lv.bytes}
            for r, lv in sorted(levels.items())]
    return {"name": name, "directory": directory, "manifest": manifest, "levels": rows,
            "checks": checks, "problems": problems}


def format_report(rep: dict) -> str:
    m = rep["manifest"]
    head = os.path.join(rep["directory"], rep["name"])
    if m:
        src = m.get("source", {}).get("kind", "?")
        head += (f"  (manifest: {m.get('tool', '?')} {m.get('tool_version', '?')}, source "
                 f"{src}, layout {m.get('layout', '?')}, split {m.get('split', '?')})")
    else:
        head += "  (no manifest)"
    lines = [f"dataset {head}",
             f"  {'level':<6}{'resolution':<12}{'parts':>6}{'records':>10}{'channels':>10}"
             f"{'labels':>8}{'bytes':>14}"]
    for row in rep["levels"]:
        res = f"{row['resolution']}x{row['resolution']}"
        rec = "?" if row["records"] is None else row["records"]
        lab = "?" if row["labels"] is None else ("yes" if row["labels"] else "no")
        lines.append(f"  r{row['level']:02d}   {res:<12}{row['parts']:>6}{rec:>10}"
                     f"{row['channels'] if row['channels'] is not None else '?':>10}"
                     f"{lab:>8}{row['bytes']:>14}")
    for ok, msg in rep["checks"]:
        lines.append(f"  {'ok  ' if ok else 'FAIL'}  {msg}")
    lines.append(f"  result: {'OK' if not rep['problems'] else 'FAILED'}")
    return "\n".join(lines)


def _define_flags(values=None):
    from absl import flags

    values = flags.FLAGS if values is None else values
    flags.DEFINE_integer("samples", 8, "records per level pair for the box-filter check (0: skip)",
                         flag_values=values)
    flags.DEFINE_boolean("quick", False, "skip reading every record (framing is still checked)",
                         flag_values=values)
    flags.DEFINE_boolean("json", False, "print the report as JSON", flag_values=values)
    flags.DEFINE_integer("seed", 0, "seed of the box-filter sample", flag_values=values)


def inspect_path(path: str, samples: int = 8, quick: bool = False, as_json: bool = False,
                 seed: int = 0) -> int:
    """Describe and check every dataset `path` names (printed); the exit status: 0 when every
    check passes, 1 otherwise (the first problem on stderr as one `error:` line)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    found = fmt.find_datasets(path)
    if not found:
        where = path if os.path.exists(os.path.dirname(path) or ".") else \
            f"{path} (no such folder)"
        print(f"error: {where}: no dataset found (files NAME-rXX.tfrecords[.NNN])",
              file=sys.stderr)
        return 1
    reports = [inspect_dataset(d, n, samples=samples, full=not quick, seed=seed)
               for d, n in found]
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if k != "manifest"} | {
            "manifest": r["manifest"] is not None} for r in reports], indent=1))
    else:
        print("\n\n".join(format_report(r) for r in reports))
    problems = [p for r in reports for p in r["problems"]]
    if problems:
        print(f"error: {problems[0]}" + (f" (and {len(problems) - 1} more problem(s))"
                                         if len(problems) > 1 else ""), file=sys.stderr)
        return 1
    return 0


def main(argv, values=None) -> int:
    """The command: argv the program and one path, the flags parsed into `values` (absl's
    FLAGS by default)."""
    from absl import flags

    f = flags.FLAGS if values is None else values
    if len(argv) != 2:
        print("error: give one dataset folder, FOLDER/NAME prefix, dataset file, manifest or "
              f"quoted glob pattern (got {len(argv) - 1} arguments)", file=sys.stderr)
        return 1
    return inspect_path(argv[1], f.samples, f.quick, f.json, f.seed)


def run():
    from tfrecords_tools import cli

    _define_flags()
    cli.run(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == "__main__":
    run()
