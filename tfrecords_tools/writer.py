"""Streaming, parallel multi-LOD writer.

Pipeline: the main process walks the planned image list in fixed-size chunks, hands each
chunk's payloads (paths or small array slices) to a pool of worker processes (spawned, no
TensorFlow in them) that decode, crop, resize, build the box-filter pyramid and encode every
level's tf.train.Example; the main process writes the results in order with TensorFlow's
TFRecordWriter. At most a bounded number of chunks is in flight, so memory does not grow with
the number of images.

Parts: the count N of each set is known after listing, so record i (i-th planned image)
goes to part i * P // N: contiguous blocks, the same boundaries at every level. A skipped
image leaves its part one record shorter.

Safety: everything is written into OUTPUT_DIR/.NAME.tmp-PID and moved into place with
os.replace at the end, the manifest last; a failed or interrupted run leaves no dataset
behind (an interrupted one leaves only the hidden temporary folder, removed by the next run).
"""
from __future__ import annotations

import collections
import contextlib
import concurrent.futures as cf
import concurrent.futures.process  # noqa: F401  cf.process, before any pool exists
import datetime
import importlib
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np
from absl import logging

try:
    import resource  # POSIX only
except ImportError:
    resource = None

# Where the OS lacks it (Windows), processes start with SIGINT as they are and nothing is blocked.
_SIGMASK = getattr(signal, "pthread_sigmask", None)

from tfrecords_tools import __version__ as TOOL_VERSION
from tfrecords_tools import format as fmt
from tfrecords_tools.sources import ImageError, ImageSpec, Source, load_image, open_source

BOX_FILTER = ("level r-1 = 2x2 mean of the unrounded float32 level r; each level stored as "
              "clip(rint(x), 0, 255) uint8")


class ConvertError(ValueError):
    """The conversion cannot proceed; the message is one line naming the file / flag."""


# ----------------------------------------------------------------------------------------------
# Pyramid
# ----------------------------------------------------------------------------------------------

def box_down(x: np.ndarray) -> np.ndarray:
    """2x2 box average of an HWC (or HW) float array, in the order StyleGAN sums."""
    return (x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]) * 0.25


def build_pyramid(img: np.ndarray) -> list[np.ndarray]:
    """CHW uint8 levels from the top (the image itself) down to 4x4; every lower level is the
    box filter of the unrounded level above, rounded and clipped."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    h, w = img.shape[:2]
    if h != w or h < 4 or h & (h - 1):
        raise ValueError(f"pyramid needs a square power-of-two image >= 4, got {img.shape}")
    levels = [np.ascontiguousarray(img.transpose(2, 0, 1))]
    x = img.astype(np.float32)
    while x.shape[0] > 4:
        x = box_down(x)
        levels.append(np.ascontiguousarray(
            np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(2, 0, 1)))
    return levels


# ----------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------

_SPEC: ImageSpec | None = None


def _init_worker(spec: ImageSpec, parent: int) -> None:
    global _SPEC
    _SPEC = spec
    # Ctrl-C reaches the whole process group: the main process stops the pool. The worker
    # started with SIGINT blocked (_sigint_blocked), so one pressed while it started is dropped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _SIGMASK:
        _SIGMASK(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True,
                     name="exit-with-parent").start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose main process died (killed, out of memory) would wait forever on its
    result pipe: leave when the parent changes."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _process_one(payload, name, label, spec):
    try:
        img = load_image(payload, name, spec)
        return ("ok", [fmt.encode_example(lv, label) for lv in build_pyramid(img)])
    except ImageError as e:
        return ("bad", name, str(e), e.skippable)
    except Exception as e:  # noqa: BLE001 - anything else about this image: report it by name
        return ("bad", name, f"{name}: {type(e).__name__}: {e}", True)


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (VmHWM: per address space, so a spawned
    worker does not inherit its parent's peak the way ru_maxrss does across fork + exec);
    ru_maxrss without /proc (macOS), 0 without either (Windows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    if resource is None:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, bytes on macOS
    return peak / (1 << 20 if sys.platform == "darwin" else 1 << 10)


def _process_chunk(items, spec=None):
    spec = spec or _SPEC
    return [_process_one(p, n, lab, spec) for p, n, lab in items], peak_rss_mib()


# ----------------------------------------------------------------------------------------------
# Sinks: one dataset (train or test) written into the temporary folder
# ----------------------------------------------------------------------------------------------

class _Sink:
    def __init__(self, tmp_dir, name, top_level, parts, planned, layout):
        self.tmp_dir, self.name, self.planned = tmp_dir, name, planned
        self.levels = list(range(top_level, fmt.MIN_LEVEL - 1, -1))  # top first
        self.layout = layout
        self.parts = 1 if layout == fmt.LAYOUT_STYLEGAN else max(1, min(parts, planned))
        self.current = {}  # level -> (part, writer)
        self.records = {r: [0] * self.parts for r in self.levels}
        self.written = 0
        self.skipped: list[str] = []
        self.label_min = self.label_max = None
        self.names: list[str] = []  # image names (file names, or source[index]) in record order

    def filename(self, level, part):
        return fmt.level_filename(self.name, level,
                                  None if self.layout == fmt.LAYOUT_STYLEGAN else part)

    def add(self, index, level_records, label, entry):
        import tensorflow as tf  # only the main process writes (TFRecord framing and CRCs)
        part = index * self.parts // max(1, self.planned)
        for level, rec in zip(self.levels, level_records):
            cur = self.current.get(level)
            if cur is None or cur[0] != part:
                if cur is not None:
                    cur[1].close()
                w = tf.io.TFRecordWriter(os.path.join(self.tmp_dir, self.filename(level, part)))
                self.current[level] = cur = (part, w)
            cur[1].write(rec)
            self.records[level][part] += 1
        self.written += 1
        self.names.append(os.path.basename(entry.name.rsplit(":", 1)[-1]))
        if label is not None:
            self.label_min = label if self.label_min is None else min(self.label_min, label)
            self.label_max = label if self.label_max is None else max(self.label_max, label)

    def close(self):
        for part, w in self.current.values():
            w.close()
        self.current = {}
        for level in self.levels:
            for part in range(self.parts):
                p = os.path.join(self.tmp_dir, self.filename(level, part))
                if not os.path.exists(p):
                    open(p, "wb").close()  # an empty part keeps the numbering contiguous

    def files(self):
        return [self.filename(r, p) for r in self.levels for p in range(self.parts)]

    def write_names(self) -> str | None:
        """Writes the image names file (the key for labels files by name); its file name."""
        if not self.names:
            return None
        path = fmt.names_path(self.tmp_dir, self.name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(n.replace("\n", " ") + "\n" for n in self.names))
        return os.path.basename(path)


# ----------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------

def plan_splits(source: Source, *, test_count=None, test_fraction=None, shuffle_seed=0,
                max_images=None):
    """(train entries, test entries or None) in writing order.

    Shuffle with shuffle_seed (None or < 0: keep the source's order), then cap at
    max_images. An explicit test_count / test_fraction pools the source's own splits and
    takes the first images of the shuffled pool as the test set; otherwise the source's own
    test split (MNIST t10k, CelebA partition 2, npz x_test) is used when it has one, and
    max_images caps each set."""
    if test_count is not None and test_fraction is not None:
        raise ConvertError("pass --test_count or --test_fraction, not both")
    if test_count is not None and test_count < 0:
        raise ConvertError(f"--test_count {test_count} must be >= 0")
    if test_fraction is not None and not 0.0 <= test_fraction < 1.0:
        raise ConvertError(f"--test_fraction {test_fraction} must be in [0, 1)")
    if max_images is not None and max_images < 1:
        raise ConvertError(f"--max_images {max_images} must be >= 1")

    def order(entries):
        entries = list(entries)
        if shuffle_seed is not None and shuffle_seed >= 0:
            perm = np.random.default_rng(shuffle_seed).permutation(len(entries))
            entries = [entries[i] for i in perm]
        return entries

    if test_count is None and test_fraction is None:
        train = order(source.train)[:max_images]
        test = None if not source.test else order(source.test)[:max_images]
        return train, test
    pool = order(list(source.train) + list(source.test or []))[:max_images]
    n_test = test_count if test_count is not None else int(round(test_fraction * len(pool)))
    if test_fraction and n_test == 0:
        raise ConvertError(f"--test_fraction {test_fraction} of {len(pool)} images is 0 "
                           f"images; pass a larger fraction or --test_count")
    if n_test >= len(pool):
        capped = max_images is not None and len(pool) == max_images
        raise ConvertError(f"test set of {n_test} images leaves no training images "
                           f"({'--max_images keeps' if capped else 'the source has'} "
                           f"{len(pool)})")
    return pool[n_test:], (pool[:n_test] if n_test > 0 else None)


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_alive_windows(pid: int) -> bool:
    """Whether process `pid` runs (True when that cannot be told: its folder is kept)."""
    try:
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() != 87  # ERROR_INVALID_PARAMETER: no such process
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    except (AttributeError, OSError):
        return True


def _clean_stale_tmp(output_dir, name):
    prefix = f".{name}.tmp-"
    for fn in os.listdir(output_dir):
        if fn.startswith(prefix) and fn[len(prefix):].isdigit():
            pid = int(fn[len(prefix):])
            if pid != os.getpid() and not _pid_alive(pid):
                logging.info("removing %s left by an interrupted conversion", fn)
                shutil.rmtree(os.path.join(output_dir, fn), ignore_errors=True)


def _import_tensorflow_in_background():
    """The main process needs TensorFlow only for TFRecordWriter; importing it takes seconds,
    so start now, while the source is listed and the workers decode the first chunks."""
    if "tensorflow" in sys.modules:
        return None
    thread = threading.Thread(target=importlib.import_module, args=("tensorflow",),
                              daemon=True, name="import-tensorflow")
    thread.start()
    return thread


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread: processes started here begin with it blocked (the
    worker initializer drops it), and this process takes a pending one when the block ends."""
    if not _SIGMASK:
        yield
        return
    _SIGMASK(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        _SIGMASK(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _interrupts_deferred():
    """Ctrl-C and SIGTERM wait until the block ends (moving a finished dataset into place);
    yields the list of the signals that came meanwhile."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda signum, _: got.append(signum)) for sig in sigs}
    try:
        yield got
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _remove_dataset(output_dir, name):
    """Remove dataset `name` from output_dir, its manifest first (it stops looking complete)."""
    mpath = fmt.manifest_path(output_dir, name)
    if os.path.exists(mpath):
        os.remove(mpath)
    for old in fmt.dataset_files(output_dir, name):
        os.remove(old)


def _chunk_size(resolution, channels):
    per_image = resolution * resolution * channels * 4 // 3 + 256
    return int(max(1, min(64, (2 << 20) // per_image)))


def convert_source(source: Source, *, output_dir: str, name: str, resolution: int | None = None,
                   channels: int | None = None, parts: int = 4, stylegan_layout: bool = False,
                   test_count: int | None = None, test_fraction: float | None = None,
                   shuffle_seed: int | None = 0, max_images: int | None = None,
                   skip_bad: bool = False, workers: int | None = None,
                   allow_upscale: bool = False, overwrite: bool = False,
                   log_every_s: float = 5.0) -> list[dict]:
    """Convert a Source into NAME (and NAME_test) in output_dir; returns their manifests
    (test set first). Raises ConvertError / SourceError with one-line messages."""
    t0 = time.time()
    if not name or os.sep in name or name.startswith("."):
        raise ConvertError(f"--name {name!r} must be a plain, non-hidden file name")
    given = resolution is not None
    if not given:
        resolution = source.default_resolution()
        if resolution is None:
            raise ConvertError(f"--source {source.kind} needs --resolution")
    try:
        top = fmt.level_of_resolution(resolution)
    except fmt.DatasetError as e:
        if not given:
            raise ConvertError(f"--source {source.kind}: the images are {resolution} px, not a "
                               f"power of two >= 4; pass --resolution to resize them") from None
        raise ConvertError(f"--resolution: {e}") from None
    channels = source.default_channels if channels is None else int(channels)
    if channels not in (1, 3):
        raise ConvertError(f"--channels {channels} must be 1 or 3")
    if parts < 1:
        raise ConvertError(f"--parts {parts} must be >= 1")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ConvertError(f"--workers {workers} must be >= 1")
    layout = fmt.LAYOUT_STYLEGAN if stylegan_layout else fmt.LAYOUT_PARTS

    train, test = plan_splits(source, test_count=test_count, test_fraction=test_fraction,
                              shuffle_seed=shuffle_seed, max_images=max_images)
    if not train:
        raise ConvertError(f"--source {source.kind}: no images to convert")
    sets = [(name + fmt.TEST_SUFFIX, "test", test)] if test else []
    sets.append((name, "train", train))

    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise ConvertError(f"--output_dir {output_dir}: cannot create the folder "
                           f"({e.strerror or e})") from None
    # A NAME_test left by an earlier conversion would pass for this one's held-out set.
    stale_test = [] if test else [name + fmt.TEST_SUFFIX]
    for set_name in [n for n, _, _ in sets] + stale_test:
        existing = fmt.dataset_files(output_dir, set_name)
        if existing and not overwrite:
            what = ("remove it (this conversion writes no test set)" if set_name in stale_test
                    else "replace it")
            raise ConvertError(f"{existing[0]} already exists ({len(existing)} files of dataset "
                               f"{set_name}); pass --overwrite to {what}")
    _clean_stale_tmp(output_dir, name)
    tmp_dir = os.path.join(output_dir, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)

    importer = _import_tensorflow_in_background()
    spec = ImageSpec(resolution=resolution, channels=channels, crop=source.crop,
                     pad=source.pad, allow_upscale=allow_upscale)
    sinks = [_Sink(tmp_dir, n, top, parts, len(entries), layout) for n, _, entries in sets]
    total = sum(len(e) for _, _, e in sets)
    jobs = ((sink, i, e) for sink, (_, _, entries) in zip(sinks, sets)
            for i, e in enumerate(entries))
    chunk = max(1, min(_chunk_size(resolution, channels), -(-total // (4 * workers))))
    n_chunks = -(-total // chunk)
    workers = max(1, min(workers, n_chunks))
    done = skipped = 0
    last_log = time.time()

    def chunks():
        buf = []
        for job in jobs:
            buf.append(job)
            if len(buf) == chunk:
                yield buf
                buf = []
        if buf:
            yield buf

    worker_peak = 0.0

    first = None  # (time, images done) when the first chunk was written: steady-state rate

    def handle(chunk_jobs, out, from_pool=False):
        nonlocal done, skipped, last_log, worker_peak, first
        results, peak = out
        if from_pool:
            worker_peak = max(worker_peak, peak)
        for (sink, i, e), res in zip(chunk_jobs, results):
            done += 1
            if res[0] == "ok":
                sink.add(i, res[1], e.label, e)
                continue
            _, img_name, message, skippable = res
            if skip_bad and skippable:
                skipped += 1
                sink.skipped.append(message)
                logging.warning("skipping %s", message)
            else:
                hint = "" if not skippable else " (--skip_bad skips such images)"
                raise ConvertError(message + hint)
        now = time.time()
        if first is None:
            first = (now, done)
        if now - last_log >= log_every_s:
            last_log = now
            logging.info("converted %d/%d images (%.0f img/s, %d skipped)", done, total,
                         done / max(now - t0, 1e-9), skipped)

    def items(chunk_jobs):
        return [(source.payload(e.key), e.name, e.label) for _, _, e in chunk_jobs]

    pool = None
    try:
        if workers <= 1:
            for cj in chunks():
                handle(cj, _process_chunk(items(cj), spec))
        else:
            # The main process is one of the `workers`: it decodes every workers-th chunk
            # itself (no pickling / pipe copies for those) between writing the results of
            # the workers - 1 pool processes, in order.
            ctx = multiprocessing.get_context("spawn")  # never fork a process holding TF
            pool = cf.ProcessPoolExecutor(workers - 1, mp_context=ctx,
                                          initializer=_init_worker,
                                          initargs=(spec, os.getpid()))
            pending = collections.deque()

            def finish_oldest():
                cj0, fut = pending.popleft()
                if fut is None:
                    handle(cj0, _process_chunk(items(cj0), spec))
                else:
                    handle(cj0, fut.result(), from_pool=True)

            for j, cj in enumerate(chunks()):
                local = j % workers == workers - 1
                if local:
                    pending.append((cj, None))
                else:
                    with _sigint_blocked():  # submit may start a worker process
                        pending.append((cj, pool.submit(_process_chunk, items(cj))))
                while len(pending) >= 2 * workers + 2:
                    finish_oldest()
            while pending:
                finish_oldest()
            pool.shutdown(wait=True)
            pool = None
        for sink in sinks:
            sink.close()
        if all(s.written == 0 for s in sinks):
            raise ConvertError(f"--source {source.kind}: every image was skipped as bad")
        elapsed = time.time() - t0
        steady = (done - first[1]) / max(time.time() - first[0], 1e-9) \
            if first and done > first[1] else done / max(elapsed, 1e-9)
        stats = {"seconds": round(elapsed, 2),
                 "images_per_second": round(done / max(elapsed, 1e-9), 1),
                 "steady_images_per_second": round(steady, 1),
                 "workers": workers,
                 "peak_rss_mib": {"main": round(peak_rss_mib(), 1),
                                  "largest_worker": round(worker_peak if workers > 1 else 0, 1)}}
        # one class count for the training and test sets (a test set may lack the last class)
        maxima = [s.label_max for s in sinks if s.label_max is not None]
        num_classes = max(maxima) + 1 if source.has_labels and maxima else None
        if source.has_labels and source.label_names:
            num_classes = len(source.label_names)
        manifests = []
        for sink, (set_name, split, _) in zip(sinks, sets):
            manifests.append(_manifest(sink, source, split, resolution, channels,
                                       shuffle_seed, max_images, stats, num_classes,
                                       companion=[n for n, _, _ in sets if n != set_name]))
        with _interrupts_deferred() as interrupted:
            for stale in stale_test:
                if fmt.dataset_files(output_dir, stale):
                    _remove_dataset(output_dir, stale)
                    logging.info("removed the old %s (this conversion writes no test set)",
                                 stale)
            for sink, m in zip(sinks, manifests):  # test set first, the training set last
                _move_into_place(tmp_dir, output_dir, sink, m)
        if interrupted:
            logging.warning("interrupted while moving the finished dataset into place: it "
                            "was completed first")
        return manifests
    except cf.process.BrokenProcessPool:
        raise ConvertError("a conversion worker process died or could not start (out of "
                           "memory? try fewer --workers; a script calling convert() needs "
                           "the `if __name__ == '__main__':` guard)") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for sink in sinks:
            for _, w in sink.current.values():
                try:
                    w.close()
                except Exception:  # noqa: BLE001
                    pass
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if importer is not None:
            importer.join()  # never leave the interpreter while TensorFlow is half imported


def _manifest(sink, source, split, resolution, channels, shuffle_seed, max_images, stats,
              num_classes, companion):
    files = {}
    for r in sorted(sink.levels):
        files[str(r)] = [{"file": sink.filename(r, p), "records": sink.records[r][p],
                          "bytes": os.path.getsize(os.path.join(sink.tmp_dir,
                                                                sink.filename(r, p)))}
                         for p in range(sink.parts)]
    has_labels = source.has_labels
    return {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "name": sink.name,
        "split": split,
        "companions": companion,
        "resolution": resolution,
        "levels": sorted(sink.levels),
        "layout": sink.layout,
        "parts": sink.parts,
        "count": sink.written,
        "channels": channels,
        "labels": bool(has_labels),
        "num_classes": None if num_classes is None else int(num_classes),
        "label_names": source.label_names if has_labels else None,
        "files": files,
        "names": sink.write_names(),
        "source": dict(source.describe(), shuffle_seed=shuffle_seed, max_images=max_images,
                       planned=sink.planned, crop=source.crop, pad=source.pad,
                       resize="PIL LANCZOS where the crop is not --resolution already"),
        "skipped": {"count": len(sink.skipped), "images": sink.skipped[:100]},
        "box_filter": BOX_FILTER,
        "tool": "tfrecords_tools",
        "tool_version": TOOL_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "conversion": stats,
    }


def _move_into_place(tmp_dir, output_dir, sink, manifest):
    # The old dataset goes first, whole, so that a crash in between never leaves old and
    # new files side by side; the manifest comes last: the dataset is complete from there.
    _remove_dataset(output_dir, sink.name)
    for fn in sink.files() + ([manifest["names"]] if manifest.get("names") else []):
        os.replace(os.path.join(tmp_dir, fn), os.path.join(output_dir, fn))
    fmt.write_manifest(fmt.manifest_path(output_dir, sink.name), manifest)


def convert(*, source: str, output_dir: str, input: str | None = None, name: str | None = None,
            labels: bool | None = None, **kwargs) -> list[dict]:
    """Python entry point taking the CLI's flag names (source kind, input path, labels
    None/True/False, and convert_source's keywords); returns the manifests, test set first."""
    src = open_source(source, input, labels)
    return convert_source(src, output_dir=output_dir, name=name or source, **kwargs)
