"""tf.data reader of multi-LOD TFRecord datasets (ours, StyleGAN's, the ALAE release's).

    info = describe("data/mnist5k")                          # DatasetInfo, checks the dataset
    ds = make_dataset("data/mnist5k", 32, batch_size=64, labels=True)
    images, labels = next(iter(ds))                          # (64, 32, 32, 1) uint8, (64,) int64

`path` designates one dataset (tfrecords_tools.format.find_datasets): a folder holding exactly
one dataset, FOLDER/NAME, one of its files or its manifest, or a glob matching its files. The
reader asks for a resolution and reads the level of the files that holds it; a dataset that
holds only some levels (the release's held-out sets: only the top one) is read at those.

Errors: problems visible before reading (missing folder, level or parts, truncated files,
manifest mismatch, bad arguments, a pipeline with no record) raise
tfrecords_tools.format.DatasetError (a ValueError) from make_dataset / describe. While
iterating, a record that is no tf.train.Example of the level's shape (or has no label when
labels are asked for) raises tf.errors.InvalidArgumentError naming the file and the record.
Every record's CRCs are checked on every pass (tf.data.TFRecordDataset does); a mismatch
raises TensorFlow's DataLossError, which names no file: iterate through `checked(...)` (or
call `diagnose(...)` in your handler) to turn any of these into a DatasetError naming the file
and record. Nothing here aborts the process.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from tfrecords_tools import format as fmt
from tfrecords_tools.format import DatasetError, DatasetInfo

__all__ = ["DatasetError", "DatasetInfo", "SHUFFLE_BYTES", "checked", "describe", "diagnose",
           "make_dataset", "shard_files", "take_images", "usable_records"]

SHUFFLE_BYTES = 256 << 20  # default memory budget of the shuffle buffer


def describe(path, check_sizes: bool = True) -> DatasetInfo:
    """DatasetInfo of the dataset at `path` (see module doc); DatasetError if it is missing or
    inconsistent (check_sizes=False: files may differ from the manifest's sizes)."""
    try:
        path = os.fsdecode(path)
    except TypeError:
        raise DatasetError(f"path {path!r} must be a str, bytes or os.PathLike") from None
    return fmt.describe(path, check_sizes=check_sizes)


def _int(name: str, value, low: int = 1) -> int:
    """`value` as an int (numpy integers too, not bools) of at least `low`; else DatasetError."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise DatasetError(f"{name} {value!r} must be an int >= {low}")
    return int(value)


def shard_files(files, records, num_pipelines: int,
                pipeline_id: int) -> list[tuple[str, int, int]]:
    """Pipeline k's share of a level as slices (file, skip, take): its records skip .. skip +
    take - 1 of each file, in file order. `records[i]`: the records of files[i] to read.
    With P files and n pipelines, when n divides P pipeline k reads whole files
    [k*P//n, (k+1)*P//n); otherwise it reads records [k*N//n, (k+1)*N//n) of the N records
    taken in file order. Disjoint and complete either way; slices of no records are left out."""
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


def make_dataset(path, resolution: int, batch_size: int, *, labels: bool = False,
                 shuffle: bool = True, repeat: bool = True, mirror: bool = False,
                 seed: int | None = None,
                 input_context: tf.distribute.InputContext | None = None,
                 info: DatasetInfo | None = None, limits: dict[str, int] | None = None,
                 shuffle_bytes: int = SHUFFLE_BYTES) -> tf.data.Dataset:
    """tf.data.Dataset of the `resolution` x `resolution` images of the dataset at `path`.

    Yields images (batch_size, H, W, C) uint8 (the records' CHW pixels, transposed), or
    (images, labels int64 (batch_size,)) when labels=True. batch_size is the batch this
    pipeline yields (under strategy.distribute_datasets_from_function pass
    input_context.get_per_replica_batch_size(global_batch)). With repeat the stream is endless
    and every batch is whole; without, one pass whose last batch may be smaller.

    shuffle: the files (or slices) come in a new order every pass, several read at once, and
    the records pass through a shuffle buffer of shuffle_bytes of records (at least one
    record, at most the share). Without shuffle: file order. mirror: each image flipped
    left-right with probability 1/2. seed: file order, shuffle and flips reproducible.
    input_context: pipeline k of n reads its share (see shard_files). info: a DatasetInfo from
    describe, to skip re-describing. limits: read only the first limits[file] records of those
    files (see usable_records: how training skips corrupt records)."""
    resolution = _int("resolution", resolution)
    batch_size = _int("batch_size", batch_size)
    shuffle_bytes = _int("shuffle_bytes", shuffle_bytes)
    seed = None if seed is None else _int("seed", seed, 0)
    info = info or describe(path)
    level = info.level_at(resolution)
    if labels and not info.has_labels:
        raise DatasetError(f"{info.prefix}: labels=True but the dataset has no 'label' feature")
    c, h, w = info.shape_at(level)
    n, k = 1, 0
    if input_context is not None:
        n, k = input_context.num_input_pipelines, input_context.input_pipeline_id
    counts = [min(r, (limits or {}).get(f, r)) for f, r in zip(info.files[level], info.records[level])]
    slices = shard_files(info.files[level], counts, n, k)
    share = sum(t for _, _, t in slices)
    if not share:
        who = f"input pipeline {k} of {n}" if n > 1 else "the reader"
        raise DatasetError(f"{info.prefix}: {who} gets no record of level r{level:02d} "
                           f"({sum(counts)} records over {n} pipeline(s))")
    # per-pipeline seeds: replicas must not shuffle or flip in lockstep
    rng = np.random.default_rng(None if seed is None else [seed, k])
    file_seed, record_seed, flip_seed = (int(v) for v in rng.integers(2 ** 31, size=3))
    if seed is None:
        file_seed = record_seed = None

    names = [f for f, _, _ in slices]
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(slices)), *(tf.constant([s[i] for s in slices], tf.int64) for i in (1, 2))))
    if shuffle and len(slices) > 1:
        ds = ds.shuffle(len(slices), seed=file_seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def read(i, skip, take):  # (file number, record index, record) of one slice
        records = tf.data.TFRecordDataset(tf.gather(names, i), buffer_size=1 << 20)
        return tf.data.Dataset.zip((tf.data.Dataset.from_tensors(i).repeat(),
                                    tf.data.Dataset.range(skip, skip + take),
                                    records.skip(skip).take(take)))

    cycle = min(len(slices), 4) if shuffle else 1
    ds = ds.interleave(read, cycle_length=cycle, block_length=1,
                       num_parallel_calls=cycle if cycle > 1 else None)
    if shuffle:
        buffer = max(1, min(share, shuffle_bytes // (c * h * w + 64)))
        ds = ds.shuffle(buffer, seed=record_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=repeat).enumerate()

    feats = {fmt.KEY_SHAPE: tf.io.FixedLenFeature([3], tf.int64, default_value=[0, 0, 0]),
             fmt.KEY_DATA: tf.io.FixedLenFeature([], tf.string, default_value="")}
    if labels:
        feats[fmt.KEY_LABEL] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)

    def fail(file_ids, indices, records):
        """Python, only for a batch with a bad record: raise naming the first one."""
        for i, index, rec in zip(file_ids.numpy(), indices.numpy(), records.numpy()):
            problem = fmt.record_problem(names[i], int(index), rec, (c, h, w), labels)
            if problem:
                raise ValueError(f"corrupt record: {problem}")
        raise ValueError(f"corrupt record: a record of {', '.join(names)} is malformed")

    def decode(step, batch):
        file_ids, indices, records = batch
        count = tf.size(records)
        # An Example starts with field 1 (features), tag byte 0x0a; parse_example would fail
        # on anything else with a message that names no file.
        looks_ok = tf.reduce_all(tf.equal(tf.strings.substr(records, 0, 1), b"\n"))
        none = {fmt.KEY_SHAPE: tf.zeros([count, 3], tf.int64), fmt.KEY_DATA: tf.fill([count], ""),
                fmt.KEY_LABEL: tf.fill([count], tf.constant(-1, tf.int64))}
        ex = tf.cond(looks_ok, lambda: tf.io.parse_example(records, feats),
                     lambda: {key: none[key] for key in feats})
        ok = tf.reduce_all([looks_ok, tf.reduce_all(tf.equal(ex[fmt.KEY_SHAPE], [c, h, w])),
                            tf.reduce_all(tf.equal(tf.strings.length(ex[fmt.KEY_DATA]), c * h * w))])
        if labels:
            ok = tf.logical_and(ok, tf.reduce_all(ex[fmt.KEY_LABEL] >= 0))
        good = tf.cond(ok, lambda: tf.constant(True),
                       lambda: tf.py_function(fail, [file_ids, indices, records], Tout=tf.bool))
        with tf.control_dependencies([good]):
            x = tf.io.decode_raw(ex[fmt.KEY_DATA], tf.uint8)
        x = tf.transpose(tf.reshape(x, [-1, c, h, w]), [0, 2, 3, 1])
        if mirror:  # drawn from (seed, batch number): reproducible under parallel decoding
            flip = tf.random.stateless_uniform([count], tf.stack([flip_seed, step])) < 0.5
            x = tf.where(flip[:, None, None, None], tf.reverse(x, [2]), x)
        return (x, ex[fmt.KEY_LABEL]) if labels else x

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = seed is not None or not shuffle
    if input_context is not None:  # sharded above
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def _levels(info: DatasetInfo, resolution: int | None) -> list[int]:
    return info.levels if resolution is None else [info.level_at(resolution)]


def diagnose(path, resolution: int | None = None, error: BaseException | None = None,
             labels: bool = False) -> DatasetError:
    """A DatasetError naming the file and record of the first bad record at `resolution`
    (every level when None), reading every record with TensorFlow (CRCs) and checking it.
    Meant for an exception handler around iteration; the original error's text is appended
    when no bad record is found."""
    info = describe(path, check_sizes=False)
    for r in _levels(info, resolution):
        problem = fmt.verify_files(info.files[r], info.shape_at(r), labels)
        if problem:
            return DatasetError(problem)
    detail = "" if error is None else f": {type(error).__name__}: " + \
        " ".join(str(error).split())[:300]
    return DatasetError(f"{info.prefix}: reading failed but no bad record was found{detail}")


def usable_records(path, resolution: int,
                   labels: bool = False) -> tuple[dict[str, int], int, list[str]]:
    """For skipping corrupt records: {file: records readable before its first bad record} for
    the files at `resolution` that have one, the number of records left out, and a line per
    such file saying what is skipped."""
    info = describe(path, check_sizes=False)
    (level,) = _levels(info, resolution)
    limits, lost, notes = {}, 0, []
    for f, total in zip(info.files[level], info.records[level]):
        problem = fmt.first_problem(f, info.shape_at(level), labels)
        if problem:
            index, message = problem
            limits[f] = index
            lost += max(0, total - index)
            notes.append(f"{message}; skipping {max(0, total - index)} record(s) (records {index}..end)")
    return limits, lost, notes


def checked(iterable, path, resolution: int | None = None, labels: bool = False):
    """Iterate `iterable` (a dataset, an iterator, a distributed iterator), turning the
    TensorFlow errors of a bad record into a DatasetError that names the file and record:

        for batch in checked(make_dataset(p, 32, 64), p, 32): ...
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
                raise DatasetError(str(e).split("corrupt record: ", 1)[1].splitlines()[0]) from e
            raise diagnose(path, resolution, e, labels) from e
        yield item


def take_images(path, resolution: int, count: int, *, labels: bool = False):
    """The first `count` records at `resolution` in file order as NHWC uint8 numpy (and
    labels int64): for figures, metrics and tests."""
    info = describe(path)
    level = info.level_at(resolution)
    out, labs = [], []
    for f in info.files[level]:
        for i, rec in fmt.iter_records(f):
            if len(out) >= count:
                break
            problem = fmt.record_problem(f, i, rec, info.shape_at(level), labels)
            if problem:
                raise DatasetError(problem)
            img, lab = fmt.fields_to_image(fmt.decode_example(rec))
            out.append(img.transpose(1, 2, 0))
            labs.append(lab)
    images = np.stack(out) if out else np.zeros((0, 2 ** level, 2 ** level, info.channels), np.uint8)
    return (images, np.asarray(labs, np.int64)) if labels else images
