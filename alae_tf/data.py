"""tf.data reader of multi-LOD TFRecord datasets (ours, StyleGAN's, the ALAE release's).

    info = describe("data/mnist5k/mnist5k")          # DatasetInfo, checks the whole dataset
    ds = make_dataset("data/mnist5k/mnist5k", lod=3, batch_size=64, labels=True)
    images, labels = next(iter(ds))                  # (64, 32, 32, 1) float32 in [-1, 1], int64

`path` designates one dataset (tfrecords_tools.format.find_datasets): a folder holding exactly
one dataset, FOLDER/NAME, one of its files or its manifest, or a glob matching its files.
`lod` 0 is 4x4 (file level r02); level r = lod + 2.

Errors: problems visible before reading (missing folder, levels or parts, truncated files,
manifest mismatch, wrong resolution at a level, bad arguments, a share under a batch) raise
tfrecords_tools.format.DatasetError (a ValueError) from make_dataset / describe. While
iterating, a record whose shape, data length or label is wrong, or that is not a
tf.train.Example at all, raises tf.errors.InvalidArgumentError whose message names the file
and the record index. A record whose CRC does not match raises TensorFlow's DataLossError,
which does not name the file: iterate through `checked(...)` (or call `diagnose(...)` in your
handler) to turn it into a DatasetError naming the file and record. Every record is read with
its CRCs checked at least once per iterator: a streamed level rereads its files after the
first pass as fixed-length frames, checking their framing and fixed bytes but not the data
CRCs again (see make_dataset). Nothing here aborts the process.
"""
from __future__ import annotations

import functools
import math
import os
import struct

import numpy as np
import tensorflow as tf
from absl import logging

from tfrecords_tools import format as fmt
from tfrecords_tools.format import DatasetError, DatasetInfo

__all__ = ["DatasetError", "DatasetInfo", "describe", "make_dataset", "shard_files",
           "diagnose", "checked", "steps_per_epoch", "take_images", "to_images", "holds_in_memory", "window_records"]

IN_MEMORY_BYTES = 256 << 20  # default memory_bytes: a share with at most this many bytes of
# pixels is held in memory; a larger one streams in windows of half as many bytes of records
_LOAD_CHUNK_BYTES = 8 << 20  # decoded at a time when loading a share into memory
_GATHER_BYTES = 1 << 20  # records gathered at a time for the batches of a streamed window
# (and at most as many bytes of frames per read after a streamed share's first pass)
_FRAME_HEAD = 12  # TFRecord framing before a record: its length (8 bytes) and their CRC
_FRAME_BYTES = _FRAME_HEAD + 4  # ... and after it, the record's CRC
# pixels per call from which the reader's conversion is compiled: a compiled call costs about
# 60 us more; it saves most on the passes that move pixels around (CHW -> HWC, flips)
_XLA_PIXELS = 1 << 14
_XLA_PIXELS_IN_PLACE = 1 << 20  # when it only converts (one channel or stored HWC, no flips)


def describe(path, check_sizes: bool = True) -> DatasetInfo:
    """DatasetInfo of the dataset at `path` (see module doc); DatasetError if it is missing,
    incomplete or inconsistent (check_sizes=False: files may differ from the manifest's sizes)."""
    return fmt.describe(_path_str(path), check_sizes=check_sizes)


def _path_str(path) -> str:
    """`path` (str, bytes or os.PathLike) as a str; DatasetError for anything else."""
    try:
        return os.fsdecode(path)
    except TypeError:
        raise DatasetError(f"path {path!r} must be a str, bytes or os.PathLike") from None


def _is_int(value) -> bool:
    """A Python or numpy integer, not a bool (True would silently mean 1)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def shard_files(files, records, num_pipelines: int,
                pipeline_id: int) -> list[tuple[str, int, int]]:
    """Pipeline k's share of a level as slices (file, skip, take): its records skip .. skip +
    take - 1 of each file, in file order. `records[i]`: the records of files[i] to read.
    With P files and n pipelines, when n divides P pipeline k reads whole files
    [k*P//n, (k+1)*P//n); otherwise it reads records [k*N//n, (k+1)*N//n) of the N records
    taken in file order. Disjoint and complete either way; in the second the shares differ
    by at most one record. Slices of no records are left out."""
    n, k, p = int(num_pipelines), int(pipeline_id), len(files)
    if len(records) != p:
        raise DatasetError(f"shard_files: {p} files but {len(records)} record counts")
    if n < 1:
        raise DatasetError(f"number of input pipelines {n} must be >= 1")
    if not 0 <= k < n:
        raise DatasetError(f"input pipeline id {k} is not in [0, {n})")
    if p % n == 0:
        lo, hi = k * p // n, (k + 1) * p // n
        return [(f, 0, int(r)) for f, r in zip(files[lo:hi], records[lo:hi]) if r > 0]
    total = sum(int(r) for r in records)
    lo, hi = k * total // n, (k + 1) * total // n
    slices, first = [], 0  # first: global index of the file's first record
    for f, r in zip(files, records):
        skip, end = max(lo - first, 0), min(hi - first, int(r))
        if skip < end:
            slices.append((f, skip, end - skip))
        first += int(r)
    return slices


def steps_per_epoch(info: DatasetInfo, batch_size: int, num_pipelines: int = 1) -> int:
    """Whole batches of `batch_size` per pipeline in one pass over the data (approximate when
    parts have unequal sizes)."""
    return info.count // (int(batch_size) * max(1, int(num_pipelines)))


def _guard(ok, files, expect_shape, need_label):
    """tf.cond that passes when `ok`, else locates the bad record in `files` (Python, only on
    failure) and raises an InvalidArgumentError naming the file and the record index."""
    files = list(files)

    def fail():
        problem = fmt.find_bad_record(files, expect_shape, need_label)
        if problem is None:
            problem = (f"a record of one of {', '.join(files)} is malformed "
                       f"(expected shape {list(expect_shape)}"
                       f"{' with a label' if need_label else ''})")
        raise ValueError(f"corrupt record: {problem}")

    return tf.cond(ok, lambda: tf.constant(True),
                   lambda: tf.py_function(fail, [], Tout=tf.bool))


def window_records(records: int, record_bytes: int, batch_size: int,
                   memory_bytes: int = IN_MEMORY_BYTES) -> int:
    """Records per window of the streaming path: whole batches of at most memory_bytes / 2
    of records (a window is permuted while the next one is read), at most the share's whole
    batches, at least one batch."""
    fit = min(memory_bytes // 2 // max(1, record_bytes), records)
    return max(1, fit // batch_size) * batch_size


def _template(files, n_pix, labels):
    """Byte template of this level's records (see tfrecords_tools.format.example_layout):
    (length, data start, label byte or None, indices and values of the fixed bytes), or None
    when the first record does not fit; then every batch takes the generic parse path."""
    for f in files:
        frames = fmt.scan_records(f, limit=1)
        if not frames:
            continue
        with open(f, "rb") as fh:
            rec = fmt.read_record(fh, *frames[0])
        try:
            fields = fmt.decode_example(rec)
        except DatasetError:
            return None
        layout = fmt.example_layout(rec)
        if (layout is None or fmt.check_fields(fields) is not None
                or layout["data"][1] - layout["data"][0] != n_pix
                or (labels and layout["label"] is None)):
            return None
        start, end = layout["data"]
        label_pos = layout["label"]
        keep = np.array([i for i in range(layout["length"])
                         if not start <= i < end and i != label_pos], np.int32)
        return layout["length"], start, label_pos, keep, np.frombuffer(rec, np.uint8)[keep]
    return None


def _frame_fixed(template) -> tuple[np.ndarray, np.ndarray]:
    """(positions, values) of the bytes every frame (12-byte header, record, 4-byte CRC) of
    this template's records has: the header, which only encodes the length, and the
    record's fixed bytes."""
    length, _, _, keep, keep_val = template
    head = struct.pack("<Q", length)
    head += struct.pack("<I", fmt.masked_crc32c(head))
    return (np.concatenate([np.arange(_FRAME_HEAD), keep + _FRAME_HEAD]).astype(np.int32),
            np.concatenate([np.frombuffer(head, np.uint8), keep_val]))


def _frame_plan(slices, stored: dict[str, int], template, batch_size: int,
                window: int) -> tuple[int, int] | None:
    """How passes after the first read a streamed share as fixed-length frames: (records per
    read, reads per window), or None where that cannot be done safely:
    no template, a file that is not `stored` frames of the template's length, or one whose
    first record does not fit the template. A read never spans two slices (it divides every
    slice), and a window is whole batches of whole reads, so nothing is dropped; reads are as
    large as 1 MiB allows while windows keep 3/4 of `window`."""
    if template is None:
        return None
    frame = template[0] + _FRAME_BYTES
    where, expect = _frame_fixed(template)
    for f in dict.fromkeys(f for f, _, _ in slices):
        try:
            if os.path.getsize(f) != stored[f] * frame:
                return None
            with open(f, "rb") as fh:
                first = np.frombuffer(fh.read(frame), np.uint8)
        except OSError:
            return None
        if stored[f] and not np.array_equal(first[where], expect):
            return None
    common = 0
    for _, _, take in slices:
        common = math.gcd(common, take)

    def records(g):  # per window, reading g at a time
        step = math.lcm(g, batch_size)
        return window // step * step

    # the largest read whose windows keep 3/4 of the records a window may hold (reads of 1
    # keep them all)
    per_read = next(g for g in range(min(max(1, _GATHER_BYTES // frame), max(1, common)), 0, -1)
                    if common % g == 0 and 4 * records(g) >= 3 * records(1))
    return per_read, records(per_read) // per_read


def holds_in_memory(records: int, pixels_per_record: int, batch_size: int,
                    memory_bytes: int = IN_MEMORY_BYTES) -> bool:
    """Whether make_dataset holds a share of `records` records in memory by default: at least
    one batch, and at most memory_bytes of pixels."""
    return batch_size <= records and records * pixels_per_record <= memory_bytes


def to_images(pixels: tf.Tensor, flip_key: tf.Tensor | None = None) -> tf.Tensor:
    """Stored pixels (N, C, H, W) uint8 -> images (N, H, W, C) float32 in [-1, 1]
    (x / 127.5 - 1): for batches from make_dataset(..., raw=True), on the device that
    consumes them. flip_key (2 int64, a stateless seed): mirror each image left-right with
    probability 1/2, image i when tf.random.stateless_uniform([N], flip_key)[i] < 0.5 (how
    training applies --mirror: on the device, not in the reader)."""
    n, c, h, w = pixels.shape
    if flip_key is not None:
        pixels = _flip(pixels, tf.random.stateless_uniform([tf.shape(pixels)[0]], flip_key) < 0.5)
    return _to_float(_chw_to_hwc(pixels, c, h, w))


def _to_float(x):
    return tf.cast(x, tf.float32) / 127.5 - 1.0


def _flip(x, flip, axis: int = 3):
    """Images x (N, C, H, W; axis 2 for (N, H, W, C)) with image i mirrored left-right where
    flip[i]."""
    return tf.where(flip[:, None, None, None], tf.reverse(x, [axis]), x)


def _to_float_compiled(x):
    """_to_float's exact values inside XLA, which would turn the division into x * (1 / 127.5),
    a bit off for some bytes. The float64 product rounds to the float32 quotient numpy gets:
    2x / 255 is never within float64's error of a float32 rounding boundary. (10-15 % less
    CPU than a table of the 256 values, which XLA does not vectorize.)"""
    return tf.cast(tf.cast(x, tf.float64) * (1 / 127.5), tf.float32) - 1.0


def _host_converter(to_float: bool, shape, xla: bool, hwc: bool = False):
    """f(rows (N, K) uint8, index (n,) or None, flip (n,) bool or None, offset) -> the
    reader's output for the images of shape (C, H, W) stored in rows[index] (all rows without
    index) at [offset, offset + C*H*W) (CHW order; HWC when hwc), mirrored where flip: the
    pixels as stored, or images (n, H, W, C) float32 in [-1, 1] when to_float. xla: compiled
    (where XLA works), the gather too for float output: one pass over the pixels, 2-6x less
    CPU than TensorFlow's kernels for batches of 64 at 32-256 px RGB, more for small calls
    (see _XLA_PIXELS). (A compiled gather of raw pixels costs more below 128 px.)"""
    c, h, w = shape
    xla = xla and _xla_works()
    dims, width = ([-1, h, w, c], 2) if hwc else ([-1, c, h, w], 3)

    def pick(rows, index, offset):
        x = rows if index is None else tf.gather(rows, index)
        return tf.reshape(x[:, offset:offset + c * h * w], dims)

    def floats(rows, index, flip, offset):
        x = pick(rows, index, offset)
        x = x if flip is None else _flip(x, flip, width)
        x = x if hwc else _chw_to_hwc(x, c, h, w)
        return _to_float_compiled(x) if xla else _to_float(x)

    if to_float:
        return tf.function(floats, jit_compile=True) if xla else floats
    flip_xla = tf.function(_flip, jit_compile=True) if xla else _flip

    def pixels(rows, index, flip, offset):
        x = pick(rows, index, offset)
        return x if flip is None else flip_xla(x, flip, width)

    return pixels


@functools.lru_cache(maxsize=None)
def _xla_works() -> bool:
    """Whether XLA compiles on the CPU, where tf.data runs (the pip TensorFlow has it; other
    builds may not)."""
    try:
        with tf.init_scope(), tf.device("/CPU:0"):
            tf.function(lambda x: x + 1, jit_compile=True)(tf.zeros([2], tf.int32)).numpy()
        return True
    except Exception as e:  # noqa: BLE001  any failure means: do without
        logging.warning("data: XLA does not work here (%s); converting pixels without it, "
                        "at about a fifth of the speed", str(e).splitlines()[0] if str(e) else e)
        return False


def _chw_to_hwc(x, c: int, h: int, w: int):
    """(N, C*H*W) or (N, C, H, W) -> (N, H, W, C); a 3-D transpose (faster than 4-D)."""
    if c == 1:
        return tf.reshape(x, [-1, h, w, 1])
    return tf.reshape(tf.transpose(tf.reshape(x, [-1, c, h * w]), [0, 2, 1]), [-1, h, w, c])


def make_dataset(path, lod: int, batch_size: int, *, mirror: bool = False,
                 labels: bool = False, shuffle: bool = True, repeat: bool = True,
                 seed: int | None = None, input_context: tf.distribute.InputContext | None = None,
                 info: DatasetInfo | None = None,
                 limits: dict[str, int] | None = None, raw: bool = False,
                 in_memory: bool | None = None,
                 memory_bytes: int = IN_MEMORY_BYTES) -> tf.data.Dataset:
    """tf.data.Dataset over level lod + 2 of the dataset at `path`.

    Yields images (batch_size, H, W, C) float32 in [-1, 1] (uint8 x / 127.5 - 1), or
    (images, labels int64 (batch_size,)) when labels=True. Batches are whole
    (drop_remainder). With repeat the stream is endless and every epoch is reshuffled.

    batch_size is the batch of THIS input pipeline: under
    strategy.distribute_datasets_from_function pass input_context.get_per_replica_batch_size(
    global_batch) yourself. With input_context, pipeline k of n reads parts
    [k*P//n, (k+1)*P//n) when n divides the P parts, else records [k*N//n, (k+1)*N//n) of
    the level's N records in file order (see shard_files): disjoint and complete either way.
    A share with no record, or with fewer than a batch when it cannot repeat into one
    (repeat=False, or held in memory), is a DatasetError; so are a lod that is no int or
    not in the dataset, and a seed that is no int.

    mirror: random horizontal flip per image. seed: makes file order, shuffle and flips
    reproducible (and the interleave deterministic). raw=True: yield the stored pixels,
    (batch_size, C, H, W) uint8, and make images with to_images where they are consumed:
    the host then only copies bytes, and moves a quarter of them (training does this).
    info: a DatasetInfo from describe to skip re-describing. limits: read only the first
    limits[file] records of those files (see usable_records: how training skips corrupt
    records).

    Shuffling: when this pipeline's share of the level takes at most memory_bytes of pixels
    (in_memory=None; True / False force it), the share is
    decoded once into memory and every epoch is a fresh random permutation of it, cut into
    batches (an epoch's remainder is dropped). Otherwise the share streams: its files (or
    slices of files) are read one after the other, in a new random order every epoch, and
    cut into windows of window_records(...) records, at most memory_bytes / 2 of them; each
    window is a random permutation cut into whole batches. With repeat, the first pass is
    read as TFRecords (every CRC checked; its last window's remainder under a batch is left
    out) and, where every record of the share's files has the same length and byte layout
    (ours, StyleGAN's and the release's datasets do), later passes as fixed-length frames,
    several records per read and no per-record work (see _frame_plan): their windows run on
    across epochs, so nothing more is left out. Without repeat, the last window's remainder
    is left out."""
    if not _is_int(lod):
        raise DatasetError(f"lod {lod!r} must be an int (0 is 4x4)")
    if seed is not None and not _is_int(seed):
        raise DatasetError(f"seed {seed!r} must be None or an int")
    if not _is_int(batch_size) or batch_size < 1:
        raise DatasetError(f"batch_size {batch_size!r} must be a positive int")
    if not _is_int(memory_bytes) or memory_bytes < 1:
        raise DatasetError(f"memory_bytes {memory_bytes!r} must be a positive int")
    info = info or describe(path)
    lod, batch_size, seed = int(lod), int(batch_size), None if seed is None else int(seed)
    level = info.level_for_lod(lod)
    if labels and not info.has_labels:
        raise DatasetError(f"{info.prefix}: labels=True but the dataset has no 'label' feature")
    c, h, w = info.shape_at(level)
    n_pix = c * h * w
    n, k = 1, 0
    if input_context is not None:
        n, k = input_context.num_input_pipelines, input_context.input_pipeline_id
    stored = dict(zip(info.files[level], info.records[level]))
    counts = dict(stored)
    for f, limit in (limits or {}).items():
        if f in counts:
            counts[f] = min(counts[f], limit)
    slices = shard_files(info.files[level], [counts[f] for f in info.files[level]], n, k)
    files = [f for f, _, _ in slices]
    records_here = sum(t for _, _, t in slices)
    record_bytes = n_pix + 64
    deterministic = seed is not None or not shuffle
    if in_memory is None:
        in_memory = holds_in_memory(records_here, n_pix, batch_size, memory_bytes)
    in_memory = bool(in_memory and shuffle)
    # Batches span epochs only when a stream repeats; an epoch held in memory must hold one.
    if records_here < batch_size and (records_here == 0 or not repeat or in_memory):
        who = f"input pipeline {k} of {n}" if n > 1 else "the reader"
        why = ""
        if records_here:
            why = (" (held in memory: an epoch must hold a batch)" if in_memory
                   else " (repeat=False: no whole batch)")
        raise DatasetError(f"{info.prefix}: {who} gets {records_here} records of level "
                           f"r{level:02d}, fewer than its batch of {batch_size}{why}")
    window = window_records(records_here, record_bytes, batch_size, memory_bytes)
    # per-pipeline seeds: replicas must not flip / shuffle in lockstep
    seeds = [None] * 3 if seed is None else [(seed * 1000003 + 7919 * k + i) % (2 ** 31)
                                             for i in (1, 2, 3)]
    # the stateless draws (in-memory permutations, flips) need a seed even when unseeded
    stateless = seeds if seed is not None else [
        int(v) for v in np.random.default_rng().integers(2 ** 31, size=3)]
    to_rows, start, checked, template = _pixel_parser(files, (c, h, w), labels)

    names, skips, takes = zip(*slices)  # not empty: records_here >= 1
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(names, tf.string),
                                             tf.constant(skips, tf.int64),
                                             tf.constant(takes, tf.int64)))
    if shuffle and len(slices) > 1 and not in_memory:
        ds = ds.shuffle(len(slices), seed=seeds[0], reshuffle_each_iteration=True)
    # The slices one after the other: the cheapest read per record (a round-robin interleave
    # costs about 1 us per record, as much as reading a 32 px record).
    if all(s == 0 and t == stored[f] for f, s, t in slices):
        ds = tf.data.TFRecordDataset(ds.map(lambda f, s, t: f), buffer_size=1 << 20)
    else:
        ds = ds.flat_map(lambda f, s, t: tf.data.TFRecordDataset(
            f, buffer_size=1 << 20).skip(s).take(t))

    out_shape = [batch_size, c, h, w] if raw else [batch_size, h, w, c]
    group = max(1, _GATHER_BYTES // (batch_size * record_bytes))  # batches per streamed call
    per_call = batch_size * n_pix * (1 if in_memory or not shuffle else group)
    hwc = in_memory and not raw  # a held share for float output is transposed once, at load
    moves = mirror or (c > 1 and not raw and not hwc)
    convert = _host_converter(not raw, (c, h, w),
                              per_call >= (_XLA_PIXELS if moves else _XLA_PIXELS_IN_PLACE), hwc)

    def arrange(serialized):
        """records -> (their pixels (n, C*H*W) uint8, in HWC order when hwc; labels)."""
        rows, y = checked(*to_rows(serialized))
        x = rows[:, start:start + n_pix]
        return (tf.reshape(_chw_to_hwc(x, c, h, w), [-1, n_pix]) if hwc else x), y

    def flips(index, count):
        """The streaming paths' flips of `count` images from batch `index` on: drawn from
        (seed, index), so parallel decoding keeps the stream reproducible."""
        if not mirror:
            return None
        key = tf.stack([tf.constant(stateless[2], tf.int64), index])
        return tf.random.stateless_uniform([count], key) < 0.5

    def finish(rows, y, index=None, flip=None, batches: int | None = 1, offset: int = 0):
        """The output for the images in rows[index] at [offset, offset + C*H*W) and labels
        y[index] (all of them without index), mirrored where flip (a bool per image):
        `batches` whole batches (None: any number)."""
        count = None if batches is None else batches * batch_size
        x = tf.ensure_shape(convert(rows, index, flip, offset), [count] + out_shape[1:])
        y = y if index is None else tf.gather(y, index)
        return (x, tf.ensure_shape(y, [count])) if labels else x

    if shuffle:
        share_mb = records_here * n_pix / 2 ** 20
        logging.info("data: level r%02d, %d records in this pipeline (%.0f MiB of pixels): %s", level,
                     records_here, share_mb, "held in memory, each epoch a permutation" if in_memory
                     else f"streamed in windows of {window} records "
                          f"({window * record_bytes / 2 ** 20:.1f} MiB), each a permutation")
    if in_memory:
        ds = _permuted_batches(ds, arrange, finish, batch_size, repeat, stateless[1],
                               records_here, record_bytes, mirror)
    elif shuffle:
        def batches(windows, offset, first_window=0):
            return _window_batches(windows, offset, finish, flips, batch_size, window, group,
                                   stateless[1], deterministic, first_window)

        # With a frame plan the TFRecords are read once (the first pass), frames after.
        plan = _frame_plan(slices, stored, template, batch_size, window) if repeat else None
        records = ds.repeat() if repeat and plan is None else ds
        ds = batches(records.batch(window).prefetch(1).map(to_rows).map(checked), start)
        if plan is not None:
            later = _frame_windows(slices, stored, checked, template, plan, seeds[0])
            ds = ds.concatenate(batches(later, start + _FRAME_HEAD, -(-records_here // window)))
    else:
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size, drop_remainder=True).enumerate()
        ds = ds.map(lambda i, s: finish(*arrange(s), flip=flips(i, batch_size)),
                    num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True if deterministic else None)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    if input_context is not None:
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.OFF  # sharded above
    return ds.with_options(options)


def _permuted_batches(records: tf.data.Dataset, arrange, finish, batch_size: int,
                      repeat: bool, seed: int, most: int, record_bytes: int,
                      mirror: bool) -> tf.data.Dataset:
    """Batches of a share held in memory: its records are decoded once per iterator (arrange),
    then each epoch is a permutation drawn from (seed, epoch) cut into whole batches, each
    gathered and passed through finish (with flips drawn from the same key when mirror).
    `most`: the share's record count (tf.data reserves room for it); make_dataset has
    checked that it holds a batch, and the assertion catches files that shrank since.
    (No tf.data cache: after a read error it would replay an empty share.)"""
    def one_epoch(epoch, x, y):
        count = tf.shape(y)[0]
        check = tf.debugging.assert_greater_equal(  # else: endless empty epochs
            count, batch_size, message=f"this input pipeline's share of the data is smaller "
                                       f"than its batch of {batch_size}")
        with tf.control_dependencies([check]):
            key = tf.stack([tf.constant(seed, tf.int64), epoch])
            order = tf.argsort(tf.random.stateless_uniform([count], key))
        whole = count // batch_size * batch_size
        rows = tf.reshape(order[:whole], [-1, batch_size])
        if not mirror:
            return tf.data.Dataset.from_tensor_slices(rows).map(
                lambda i: finish(x, y, i),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        flips = tf.reshape(tf.random.stateless_uniform([whole], key + [0, 2 ** 40]) < 0.5,
                           [-1, batch_size])
        return tf.data.Dataset.from_tensor_slices((rows, flips)).map(
            lambda i, f: finish(x, y, i, f),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def all_epochs(x, y):
        return tf.data.Dataset.range(2 ** 62 if repeat else 1).flat_map(
            lambda e: one_epoch(e, x, y))

    # Decoded a chunk at a time, then gathered into one tensor: the load peaks near twice
    # the share's pixels, not three times (records + decoded + arranged).
    chunk = max(1, _LOAD_CHUNK_BYTES // record_bytes)
    share = records.batch(chunk).map(arrange).unbatch().batch(max(1, most))
    return share.flat_map(all_epochs)


def _frame_windows(slices, stored: dict[str, int], checked, template, plan,
                   seed: int | None) -> tf.data.Dataset:
    """Decoded windows (rows uint8, labels) of every pass after a streamed share's first, read
    as fixed-length frames (_frame_plan) without the per-record work of the TFRecord reader
    (the data CRCs are not checked again), in windows that run on across passes. A record's
    pixels are _FRAME_HEAD bytes later in these rows than in the first pass's."""
    per_read, reads = plan
    frame = template[0] + _FRAME_BYTES
    names, skips, takes = zip(*slices)
    after = [stored[f] - s - t for f, s, t in slices]
    later = tf.data.Dataset.from_tensor_slices(
        (tf.constant(names), *(tf.constant(v, tf.int64) for v in (skips, takes, after))))
    if len(slices) > 1:
        later = later.shuffle(len(slices), reshuffle_each_iteration=True,
                              seed=None if seed is None else seed + 1)
    later = later.repeat().flat_map(lambda f, s, t, a: tf.data.FixedLengthRecordDataset(
        f, per_read * frame, header_bytes=s * frame, footer_bytes=a * frame,
        buffer_size=1 << 20))
    return later.batch(reads).prefetch(1).map(_frame_parser(template)).map(checked)


def _window_batches(windows: tf.data.Dataset, start: int, finish, flips, batch_size: int,
                    window: int, group: int, seed: int, deterministic: bool,
                    first_window: int = 0) -> tf.data.Dataset:
    """Batches of a streamed share from its decoded windows (rows, labels; a record's pixels at
    `start` of its row; at most `window` records each), numbered from first_window: each
    window is permuted by a draw from (seed, window number) and cut into whole batches,
    which finish gathers; `group` batches at a time are one call of finish, and the batches
    are slices of it. A window's remainder under a batch (the last window of a stream that
    ends) is left out."""
    per_window = window // batch_size

    def batches(w, rows, y):
        count = tf.shape(y)[0]
        key = tf.stack([tf.constant(seed, tf.int64), w])
        order = tf.argsort(tf.random.stateless_uniform([count], key))
        whole = count // batch_size * batch_size
        picks = tf.reshape(order[:whole], [-1, batch_size])
        first = w * per_window
        index = first + tf.range(tf.shape(picks)[0], dtype=tf.int64)

        def one_batch(i, b):
            return finish(rows, y, i, flips(b, batch_size), offset=start)

        def some_batches(i, b):
            i = tf.reshape(i, [-1])
            out = finish(rows, y, i, flips(b[0], tf.size(i)), batches=None, offset=start)
            out = out if isinstance(out, tuple) else (out,)
            return tuple(tf.reshape(t, tf.concat([[-1, batch_size], tf.shape(t)[1:]], 0))
                         for t in out)

        order_kw = dict(num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True if deterministic else None)
        per_batch = tf.data.Dataset.from_tensor_slices((picks, index))
        if group == 1:
            return per_batch.map(one_batch, **order_kw)
        # Each call of a tf.data function costs tens of us of CPU: with small records one
        # call per batch cost more than the gathers themselves.
        return per_batch.batch(group).map(some_batches, **order_kw).flat_map(
            lambda *t: tf.data.Dataset.from_tensor_slices(t if len(t) > 1 else t[0]))

    # Callers prefetch a window before decoding it: the next window is read while this one
    # is consumed, and decoded on demand, so not on the reading thread (both on the reading
    # thread: 0.76 of the bare read rate at 256 px).
    return windows.enumerate(first_window).flat_map(lambda w, rows_y: batches(w, *rows_y))


def _pixel_parser(files, shape, labels: bool):
    """(to_rows, start, checked). to_rows maps serialized records [n] to (rows uint8 [n, K],
    int64 labels [n] (zeros without labels), ok): the CHW pixels of record i are
    rows[i, start:start + C*H*W] (the records themselves when the first record has a byte
    template (see _template), so the pixels are copied out once, where they are used; a
    record that does not fit it is parsed and its pixels put where the template has them),
    and ok is False when a record is malformed. checked(rows, labels, ok) passes rows and
    labels on, or raises naming the file and record when ok is False: kept out of to_rows
    (call it in a map of its own) because its py_function, anywhere in a tf.data function,
    slows all of it (a third of the read rate at 32 px)."""
    c, h, w = shape
    n_pix = c * h * w
    feats = {fmt.KEY_SHAPE: tf.io.FixedLenFeature([3], tf.int64, default_value=[0, 0, 0]),
             fmt.KEY_DATA: tf.io.FixedLenFeature([], tf.string, default_value="")}
    if labels:
        feats[fmt.KEY_LABEL] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
    expect = tf.constant([c, h, w], tf.int64)

    def slow(serialized):
        """Generic path: parse_example and check; (pixels [n, C*H*W], labels, ok)."""
        n = tf.size(serialized)
        # A tf.train.Example starts with field 1 (features), tag byte 0x0a; anything else
        # would make parse_example fail with a message that names no file.
        looks_ok = tf.reduce_all(tf.equal(tf.strings.substr(serialized, 0, 1), b"\n"))
        none = {fmt.KEY_SHAPE: tf.zeros([n, 3], tf.int64), fmt.KEY_DATA: tf.fill([n], ""),
                fmt.KEY_LABEL: tf.fill([n], tf.constant(-1, tf.int64))}
        ex = tf.cond(looks_ok, lambda: tf.io.parse_example(serialized, feats),
                     lambda: {k: none[k] for k in feats})
        ok = tf.logical_and(looks_ok, tf.logical_and(
            tf.reduce_all(tf.equal(ex[fmt.KEY_SHAPE], expect)),
            tf.reduce_all(tf.equal(tf.strings.length(ex[fmt.KEY_DATA]), n_pix))))
        if labels:
            ok = tf.logical_and(ok, tf.reduce_all(ex[fmt.KEY_LABEL] >= 0))
        x = tf.cond(ok, lambda: tf.reshape(tf.io.decode_raw(ex[fmt.KEY_DATA], tf.uint8), [-1, n_pix]),
                    lambda: tf.zeros([n, n_pix], tf.uint8))
        y = ex[fmt.KEY_LABEL] if labels else tf.zeros(tf.shape(serialized), tf.int64)
        return x, y, ok

    def checked(rows, y, ok):
        with tf.control_dependencies([_guard(ok, files, shape, labels)]):
            return tf.identity(rows), tf.identity(y)

    template = _template(files, n_pix, labels)
    if template is None:
        return slow, 0, checked, None
    length, start, label_pos, keep, keep_val = template
    keep_idx, keep_val = tf.constant(keep), tf.constant(keep_val)

    def slow_as_rows(serialized):
        x, y, ok = slow(serialized)
        return tf.pad(x, [[0, 0], [start, length - start - n_pix]]), y, ok

    def records_to_rows(serialized):
        # records of another length would make decode_raw fail: they take the generic path
        same_len = tf.reduce_all(tf.equal(tf.strings.length(serialized), length))
        raw = tf.cond(same_len,
                      lambda: tf.reshape(tf.io.decode_raw(serialized, tf.uint8), [-1, length]),
                      lambda: tf.zeros([tf.size(serialized), length], tf.uint8))
        same = tf.logical_and(
            same_len, tf.reduce_all(tf.equal(tf.gather(raw, keep_idx, axis=1), keep_val)))
        if label_pos is not None:
            same = tf.logical_and(same, tf.reduce_all(raw[:, label_pos] < 128))
            y = tf.cast(raw[:, label_pos], tf.int64)
        else:
            y = tf.zeros(tf.shape(serialized), tf.int64)
        return tf.cond(same, lambda: (raw, y, tf.constant(True)),
                       lambda: slow_as_rows(serialized))

    return records_to_rows, start, checked, template


def _frame_parser(template):
    """frames_to_rows for reads of whole frames (see _frame_plan): reads [n] of k frames each
    -> (rows uint8 [n*k, frame], labels int64, ok): a record's pixels at _FRAME_HEAD + the
    template's start, ok False where a frame's header or fixed bytes differ from the template's."""
    length, _, label_pos, _, _ = template
    frame = length + _FRAME_BYTES
    where, expect = (tf.constant(a) for a in _frame_fixed(template))

    def frames_to_rows(reads):
        rows = tf.reshape(tf.io.decode_raw(reads, tf.uint8), [-1, frame])
        ok = tf.reduce_all(tf.equal(tf.gather(rows, where, axis=1), expect))
        if label_pos is None:
            return rows, tf.zeros(tf.shape(rows)[:1], tf.int64), ok
        byte = rows[:, _FRAME_HEAD + label_pos]
        return rows, tf.cast(byte, tf.int64), tf.logical_and(ok, tf.reduce_all(byte < 128))

    return frames_to_rows


def diagnose(path, lod: int | None = None, error: BaseException | None = None,
             labels: bool = False) -> DatasetError:
    """A DatasetError naming the file and record index of the first bad record at level
    lod + 2 (every level when lod is None), reading each file with TensorFlow (CRCs) and
    checking every record. Meant for an exception handler around iteration; the original
    error's text is appended when no bad record is found."""
    from tfrecords_tools.inspect import verify_files  # TF-backed CRC check

    info = describe(path)
    levels = info.levels if lod is None else [info.level_for_lod(lod)]
    for r in levels:
        problem = verify_files(info.files[r], info.shape_at(r), labels)
        if problem:
            return DatasetError(problem)
    detail = "" if error is None else f": {type(error).__name__}: " + \
        " ".join(str(error).split())[:300]
    return DatasetError(f"{info.prefix}: reading failed but no bad record was found{detail}")


def usable_records(path, lod: int, labels: bool = False) -> tuple[dict[str, int], int, list[str]]:
    """For skipping corrupt records: {file: records readable before its first bad record} for
    the files of level lod + 2 that have one, the number of records left out, and a line per
    such file saying what is skipped."""
    from tfrecords_tools.inspect import first_problem

    info = describe(path, check_sizes=False)
    level = info.level_for_lod(lod)
    limits, lost, notes = {}, 0, []
    for f, total in zip(info.files[level], info.records[level]):
        problem = first_problem(f, info.shape_at(level), labels)
        if problem:
            index, message = problem
            limits[f] = index
            lost += max(0, total - index)
            notes.append(f"{message}; skipping {max(0, total - index)} record(s) (records {index}..end)")
    return limits, lost, notes


def checked(iterable, path, lod: int | None = None, labels: bool = False):
    """Iterate `iterable` (a dataset, an iterator, a distributed iterator), turning the
    TensorFlow errors of a bad record into a DatasetError that names the file and record:

        for batch in checked(make_dataset(p, lod, 64), p, lod): ...
    """
    it = iter(iterable)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                UnicodeDecodeError) as e:
            if isinstance(e, tf.errors.InvalidArgumentError) and "corrupt record: " in str(e):
                msg = str(e).split("corrupt record: ", 1)[1].splitlines()[0]
                raise DatasetError(msg) from e
            raise diagnose(path, lod, e, labels) from e
        yield item


def take_images(path, lod: int, count: int, *, labels: bool = False):
    """The first `count` records of a level in file order as NHWC uint8 numpy (and labels):
    for figures, metrics and tests."""
    info = describe(path)
    level = info.level_for_lod(lod)
    out, labs = [], []
    for f in info.files[level]:
        for _, rec in fmt.iter_records(f):
            if len(out) >= count:
                break
            fields = fmt.decode_example(rec)
            problem = fmt.check_fields(fields, info.shape_at(level), labels)
            if problem:
                raise DatasetError(f"{f}: {problem}")
            img, lab = fmt.fields_to_image(fields)
            out.append(img.transpose(1, 2, 0))
            labs.append(lab)
    images = np.stack(out) if out else np.zeros((0, 2 ** level, 2 ** level, info.channels),
                                                 np.uint8)
    return (images, np.asarray(labs, np.int64)) if labels else images

