"""alae_tf.data: describe / make_dataset over our datasets and StyleGAN / release fixtures."""
import os
import pathlib
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from alae_tf import data
from tfrecords_tools import format as fmt
from tfrecords_tools.writer import convert
from tests.helpers_data import smooth_images, write_fixture


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("mnist"))
    convert(source="mnist5k", output_dir=d, name="mn", max_images=120, test_count=20, parts=4,
            workers=1)
    return d


@pytest.fixture(scope="module")
def two_part_dir(tmp_path_factory):
    """23 MNIST digits in 2 parts (12 + 11 records)."""
    d = str(tmp_path_factory.mktemp("two"))
    convert(source="mnist5k", output_dir=d, name="two", max_images=23, parts=2, workers=1)
    return d


@pytest.fixture(scope="module")
def rgb_dir(tmp_path_factory):
    """Release layout (3 parts, labels = record index) of 12 RGB 16x16 images."""
    d = str(tmp_path_factory.mktemp("rgb"))
    imgs = smooth_images(12, 16, 3, seed=5)
    write_fixture(d, "rel", imgs, labels=list(range(12)), parts=3)
    return d, imgs


def all_records(ds):
    return [tuple(np.asarray(t) for t in b) if isinstance(b, tuple) else np.asarray(b)
            for b in ds]


def test_describe(mnist_dir):
    info = data.describe(mnist_dir)  # the folder holds mn and mn_test: it means mn
    assert (info.name, info.levels, info.resolution, info.channels, info.count) == \
        ("mn", [2, 3, 4, 5], 32, 1, 100)
    assert info.has_labels and info.parts == {r: 4 for r in range(2, 6)}
    assert info.manifest is not None and info.num_classes == 10
    assert len(info.files[5]) == 4 and all(os.path.isfile(f) for f in info.files[5])
    assert data.describe(os.path.join(mnist_dir, "mn_test")).count == 20


@pytest.mark.parametrize("lod", [0, 1, 2, 3])
def test_round_trip_every_level(mnist_dir, lod):
    ds = data.make_dataset(mnist_dir, lod, 10, labels=True, shuffle=False, repeat=False)
    batches = all_records(ds)
    assert len(batches) == 10
    x, y = batches[0]
    side = 4 * 2 ** lod
    assert x.shape == (10, side, side, 1) and x.dtype == np.float32 and y.dtype == np.int64
    images, labels = data.take_images(mnist_dir, lod, 100, labels=True)
    got = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(got, images.astype(np.float32) / 127.5 - 1.0)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
    assert got.min() >= -1.0 and got.max() <= 1.0


def test_rgb_release_layout_values_and_labels(rgb_dir):
    d, imgs = rgb_dir
    x, y = next(iter(data.make_dataset(d, 2, 12, labels=True, shuffle=False, repeat=False)))
    np.testing.assert_array_equal(y, np.arange(12))
    np.testing.assert_array_equal(x.numpy(), imgs.astype(np.float32) / 127.5 - 1)  # NHWC
    assert not data.describe(d).manifest


def test_stylegan_layout_fixture(tmp_path):
    imgs = smooth_images(6, 8, 3, seed=2)
    write_fixture(str(tmp_path), "sg", imgs, labels=None, parts=None)
    assert sorted(os.listdir(tmp_path)) == ["sg-r02.tfrecords", "sg-r03.tfrecords"]
    x = next(iter(data.make_dataset(str(tmp_path), 1, 6, shuffle=False, repeat=False)))
    np.testing.assert_array_equal(x.numpy(), imgs.astype(np.float32) / 127.5 - 1)
    with pytest.raises(data.DatasetError, match="labels=True but the dataset has no 'label'"):
        data.make_dataset(str(tmp_path), 1, 6, labels=True)


def test_other_key_order_and_big_labels_take_the_generic_path(tmp_path):
    imgs = smooth_images(8, 8, 1, seed=4)
    labels = [0, 300, 5, 2 ** 33, 7, 128, 1, 9]  # multi-byte varints: generic parse
    write_fixture(str(tmp_path), "k", imgs, labels=labels, parts=2,
                  key_order=("label", "data", "shape"))
    x, y = next(iter(data.make_dataset(str(tmp_path), 1, 8, labels=True, shuffle=False,
                                       repeat=False)))
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x.numpy(), imgs.astype(np.float32) / 127.5 - 1)


def test_big_labels_stream_through_the_generic_path(tmp_path):
    imgs = smooth_images(8, 8, 1, seed=6)
    labels = [3, 300, 5, 2 ** 33, 7, 128, 1, 9]  # the first fits the byte template, some not
    write_fixture(str(tmp_path), "b", imgs, labels=labels, parts=2)
    x, y = next(iter(data.make_dataset(str(tmp_path), 1, 8, labels=True, in_memory=False,
                                       seed=0, repeat=False)))
    assert sorted(y.numpy()) == sorted(labels)
    for img, lab in zip(x.numpy(), y.numpy()):
        np.testing.assert_array_equal(img, imgs[labels.index(lab)].astype(np.float32) / 127.5 - 1)


def test_window_records():
    assert data.window_records(100, 100, 25, memory_bytes=1 << 20) == 100  # the whole share
    assert data.window_records(100, 100, 25, memory_bytes=6000) == 25  # 30 fit: one batch
    assert data.window_records(100, 100, 25, memory_bytes=4000) == 25  # 20 fit: still a batch
    assert data.window_records(110, 100, 25, memory_bytes=1 << 20) == 100  # whole batches


def test_stream_windows_are_permutations_of_the_file_stream(rgb_dir):
    d, _ = rgb_dir  # 3 parts of 4 records (labels 0-3, 4-7, 8-11); 256-byte records at lod 1
    it = iter(data.make_dataset(d, 1, 2, labels=True, seed=7, memory_bytes=2100))
    assert data.window_records(12, 8 * 8 * 3 + 64, 2, 2100) == 4  # a window is one part
    ys = np.concatenate([next(it)[1].numpy() for _ in range(60)])  # 10 epochs
    windows = ys.reshape(-1, 4)
    parts = [set(range(4 * p, 4 * p + 4)) for p in range(3)]
    assert all(set(win) in parts for win in windows)
    epochs = windows.reshape(10, 3, 4)
    assert all(sorted(min(win) for win in e) == [0, 4, 8] for e in epochs)  # all parts
    assert len({tuple(min(win) for win in e) for e in epochs}) > 1  # parts in new orders
    assert len({tuple(win) for win in windows}) > 3  # records in new orders
    again = iter(data.make_dataset(d, 1, 2, labels=True, seed=7, memory_bytes=2100))
    np.testing.assert_array_equal(np.concatenate([next(again)[1].numpy() for _ in range(60)]), ys)


def test_stream_gathers_batches_in_groups(rgb_dir, monkeypatch):
    d, imgs = rgb_dir  # 12 records of 16x16x3 at lod 2: a window of 6 batches of 2
    record = 16 * 16 * 3 + 64

    def stream(gather_bytes, **kw):
        monkeypatch.setattr(data, "_GATHER_BYTES", gather_bytes)
        it = iter(data.make_dataset(d, 2, 2, labels=True, raw=True, seed=5, in_memory=False,
                                    memory_bytes=40 * record, **kw))
        return [tuple(t.numpy() for t in next(it)) for _ in range(30)]  # 5 windows

    one = stream(1)  # a gather per batch
    for groups in (4, 6):  # 6 batches per window: groups of 4 and 2, or one of 6
        grouped = stream(groups * 2 * record)
        for (x, y), (gx, gy) in zip(one, grouped):
            np.testing.assert_array_equal(gy, y)
            np.testing.assert_array_equal(gx, x)
    flipped = 0
    for x, y in stream(4 * 2 * record, mirror=True):
        for img, lab in zip(x, y):
            stored = imgs[lab].transpose(2, 0, 1)
            flipped += not np.array_equal(img, stored)
            np.testing.assert_array_equal(img, stored if np.array_equal(img, stored)
                                          else stored[:, :, ::-1])
    assert 10 < flipped < 50


@pytest.mark.parametrize("in_memory", [None, False])  # 100 records: held in memory by default
def test_shuffle_repeat_and_seed(mnist_dir, in_memory):
    def first(n, **kw):
        it = iter(data.make_dataset(mnist_dir, 1, 25, in_memory=in_memory, **kw))
        return np.concatenate([next(it).numpy() for _ in range(n)])

    a, b = first(9, seed=3), first(9, seed=3)  # > 2 epochs of 100: repeats, same order
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, first(9, seed=4))
    plain = np.concatenate(all_records(data.make_dataset(mnist_dir, 1, 25, shuffle=False,
                                                         repeat=False)))
    assert not np.array_equal(a[:25], plain[:25])  # shuffled
    key = lambda x: sorted(map(bytes, x.reshape(len(x), -1)))  # noqa: E731
    assert key(a[:100]) == key(plain) and key(a[100:200]) == key(plain)  # epochs: permutations
    assert not np.array_equal(a[:100], a[100:200])  # reshuffled every epoch
    unseeded = np.concatenate(all_records(data.make_dataset(mnist_dir, 1, 25, repeat=False,
                                                            in_memory=in_memory)))
    assert key(unseeded) == key(plain)


@pytest.mark.parametrize("in_memory", [True, False])
def test_raw_pixels_and_to_images(rgb_dir, in_memory):
    d, imgs = rgb_dir  # labels = record index
    kw = dict(labels=True, repeat=False, in_memory=in_memory)
    raw = all_records(data.make_dataset(d, 2, 4, raw=True, seed=1, **kw))
    floats = all_records(data.make_dataset(d, 2, 4, seed=1, **kw))
    assert sorted(int(v) for _, y in raw for v in y) == list(range(12))
    for (x, y), (xf, yf) in zip(raw, floats):
        assert x.dtype == np.uint8 and x.shape == (4, 3, 16, 16)
        np.testing.assert_array_equal(x, imgs[y].transpose(0, 3, 1, 2))  # as stored: CHW
        np.testing.assert_array_equal(y, yf)  # same seed, same order
        np.testing.assert_array_equal(data.to_images(tf.constant(x)).numpy(), xf)
        np.testing.assert_array_equal(xf, imgs[y].astype(np.float32) / 127.5 - 1)
    # flips: the same images are flipped in both layouts, along the width
    raw = all_records(data.make_dataset(d, 2, 4, raw=True, seed=2, mirror=True, **kw))
    floats = all_records(data.make_dataset(d, 2, 4, seed=2, mirror=True, **kw))
    flipped = 0
    for (x, y), (xf, _) in zip(raw, floats):
        np.testing.assert_array_equal(data.to_images(tf.constant(x)).numpy(), xf)
        for img, lab in zip(x, y):
            same = np.array_equal(img, imgs[lab].transpose(2, 0, 1))
            flipped += not same
            if not same:
                np.testing.assert_array_equal(img, imgs[lab].transpose(2, 0, 1)[:, :, ::-1])
    assert 0 < flipped < 12


@pytest.mark.parametrize("xla", [True, False])
def test_reader_conversion_is_exact_with_and_without_xla(monkeypatch, rgb_dir, xla):
    """Every uint8 value becomes exactly x / 127.5 - 1 (numpy), flipped where asked, compiled
    or not (without XLA, as where it does not work); the reader's batches agree."""
    assert data._xla_works()  # the pip TensorFlow has XLA on CPU
    monkeypatch.setattr(data, "_xla_works", lambda: xla)
    monkeypatch.setattr(data, "_XLA_PIXELS", 1)  # every call of the reader compiled with xla
    monkeypatch.setattr(data, "_XLA_PIXELS_IN_PLACE", 1)
    x = np.random.default_rng(0).permutation(np.arange(6 * 256) % 256).astype(np.uint8)
    x = x.reshape(4, 3, 8, 16)  # W != H
    rows = np.concatenate([np.full((4, 5), 7, np.uint8), x.reshape(4, -1), np.ones((4, 2), np.uint8)], 1)
    index, flip = np.array([3, 0, 2]), np.array([True, False, True])
    want = np.where(flip[:, None, None, None], x[index][..., ::-1], x[index])
    to_float = data._host_converter(True, (3, 8, 16), xla)
    np.testing.assert_array_equal(to_float(tf.constant(x.reshape(4, -1)), None, None, 0).numpy(),
                                  x.transpose(0, 2, 3, 1).astype(np.float32) / 127.5 - 1)
    np.testing.assert_array_equal(to_float(tf.constant(rows), tf.constant(index), tf.constant(flip), 5).numpy(),
                                  want.transpose(0, 2, 3, 1).astype(np.float32) / 127.5 - 1)
    np.testing.assert_array_equal(data._host_converter(False, (3, 8, 16), xla)(
        tf.constant(rows), tf.constant(index), tf.constant(flip), 5), want)
    hwc = x.transpose(0, 2, 3, 1)  # a held share for float output is stored HWC
    np.testing.assert_array_equal(data._host_converter(True, (3, 8, 16), xla, hwc=True)(
        tf.constant(hwc.reshape(4, -1)), tf.constant(index), tf.constant(flip), 0).numpy(),
        want.transpose(0, 2, 3, 1).astype(np.float32) / 127.5 - 1)
    d, imgs = rgb_dir
    for in_memory in (True, False):
        flipped = 0
        for x, y in all_records(data.make_dataset(d, 2, 4, labels=True, seed=5, mirror=True,
                                                  repeat=False, in_memory=in_memory)):
            for img, lab in zip(x, y):
                ref = imgs[lab].astype(np.float32) / 127.5 - 1
                flipped += not np.array_equal(img, ref)
                np.testing.assert_array_equal(img, ref if np.array_equal(img, ref) else ref[:, ::-1])
        assert 0 < flipped < 12


def test_reader_does_without_xla_where_it_does_not_compile(monkeypatch, caplog):
    def no_xla(*args, jit_compile=None, **kwargs):
        raise tf.errors.UnimplementedError(None, None, "no XLA_CPU_JIT device\nmore")

    monkeypatch.setattr(tf, "function", no_xla)
    with caplog.at_level("WARNING"):
        assert data._xla_works.__wrapped__() is False
    assert "XLA does not work here (no XLA_CPU_JIT device)" in caplog.text


def test_to_images_flip_key_mirrors_the_drawn_images():
    x = np.random.default_rng(3).integers(0, 256, (32, 3, 4, 5), np.uint8)  # W != H
    plain = x.transpose(0, 2, 3, 1).astype(np.float32) / 127.5 - 1
    masks = []
    for key in ([7, 0], [7, 1]):
        drawn = tf.random.stateless_uniform([32], tf.constant(key, tf.int64)).numpy() < 0.5
        out = data.to_images(tf.constant(x), flip_key=tf.constant(key, tf.int64)).numpy()
        np.testing.assert_array_equal(out[~drawn], plain[~drawn])
        np.testing.assert_array_equal(out[drawn], plain[drawn][:, :, ::-1])  # along the width
        assert 0 < drawn.sum() < 32
        masks.append(drawn)
    assert not np.array_equal(*masks)  # another key, other flips


def test_in_memory_epochs_drop_their_remainder(rgb_dir):
    d, _ = rgb_dir  # 12 records, batch 5: two whole batches per epoch, 2 records left out
    it = iter(data.make_dataset(d, 1, 5, labels=True, in_memory=True, seed=0))
    epochs = [np.concatenate([next(it)[1].numpy() for _ in range(2)]) for _ in range(12)]
    assert all(len(set(e)) == 10 for e in epochs)  # no record twice within an epoch
    assert len({tuple(sorted(e)) for e in epochs}) > 1  # a different remainder each epoch
    assert set(np.concatenate(epochs)) == set(range(12))
    # a share smaller than the batch: streamed by default (batches span epochs) ...
    x, y = next(iter(data.make_dataset(d, 1, 20, labels=True, seed=0)))
    assert len(y) == 20 and set(y.numpy()) == set(range(12))
    # ... and an error when forced into memory
    with pytest.raises(data.DatasetError, match="gets 12 records of level r03, fewer than its "
                                                "batch of 20"):
        data.make_dataset(d, 1, 20, in_memory=True)


def test_memory_bytes_decides_memory_or_stream(rgb_dir):
    d, _ = rgb_dir  # 12 records of 8x8x3 = 192 bytes at lod 1: a 2,304-byte share

    def counts(memory_bytes, mirror=False, skip=0):  # how often each record comes in the
        # first 10 + 60 images (the first 10 only with skip=2)
        it = iter(data.make_dataset(d, 1, 5, labels=True, seed=3, memory_bytes=memory_bytes,
                                    mirror=mirror))
        ys = [next(it)[1].numpy() for _ in range(14 - 6 * skip)]
        return np.bincount(np.concatenate(ys), minlength=12)

    assert data.holds_in_memory(12, 192, 5, memory_bytes=2304)
    assert not data.holds_in_memory(12, 192, 5, memory_bytes=2303)
    # streamed: the first pass in windows of 5 leaves out 2 records; later passes run on
    # across epochs, so the next 60 images are exactly 5 passes
    first, later = counts(2303, skip=2), counts(2303)
    assert first.sum() == 10 and first.max() == 1
    np.testing.assert_array_equal(later - first, np.full(12, 5))
    # held: each epoch of 10 leaves out 2 records, a different pair each time; with mirror
    # too (flipped after the gather: the share is held once, not next to its mirror images)
    for mirror in (False, True):
        held = counts(2304, mirror)
        assert held.sum() == 70 and held.max() > 6
    with pytest.raises(data.DatasetError, match="memory_bytes 0 must be a positive int"):
        data.make_dataset(d, 1, 5, memory_bytes=0)


def test_mirror_flips_some_images(rgb_dir):
    d, imgs = rgb_dir
    ref = imgs.astype(np.float32) / 127.5 - 1
    flips = 0
    for seed in range(3):
        x, y = next(iter(data.make_dataset(d, 2, 12, labels=True, mirror=True, shuffle=False,
                                           repeat=False, seed=seed)))
        for img, lab in zip(x.numpy(), y.numpy()):
            if np.array_equal(img, ref[lab]):
                continue
            np.testing.assert_array_equal(img, ref[lab][:, ::-1])  # horizontal flip
            flips += 1
    assert 0 < flips < 36


def _ids(ds):
    return [int(v) for b in ds for v in b[1].numpy()]


@pytest.mark.parametrize("pipelines", [2, 3, 5])
def test_sharding_is_disjoint_and_complete(rgb_dir, pipelines):
    d, _ = rgb_dir  # 3 parts of 4 records (labels = record index): 3 pipelines by part
    seen = []
    for k in range(pipelines):
        ctx = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=k,
                                         num_replicas_in_sync=pipelines)
        ids = _ids(data.make_dataset(d, 1, 1, labels=True, repeat=False, input_context=ctx))
        assert len(ids) == len(set(ids))
        assert set(ids) == set(range(k * 12 // pipelines, (k + 1) * 12 // pipelines))
        seen.append(set(ids))
    assert sum(len(s) for s in seen) == 12 and set().union(*seen) == set(range(12))


def test_shard_files_slices():
    files = ["a", "b", "c", "d"]
    # n divides the parts: whole files, even when their sizes differ
    assert data.shard_files(files, [3, 5, 4, 4], 2, 0) == [("a", 0, 3), ("b", 0, 5)]
    assert data.shard_files(files, [3, 5, 4, 4], 2, 1) == [("c", 0, 4), ("d", 0, 4)]
    assert data.shard_files(files, [3, 5, 4, 4], 1, 0) == [("a", 0, 3), ("b", 0, 5),
                                                          ("c", 0, 4), ("d", 0, 4)]
    # otherwise record ranges [k*N//n, (k+1)*N//n) in file order, empty files left out
    assert [data.shard_files(files, [5, 5, 5, 5], 3, k) for k in range(3)] == [
        [("a", 0, 5), ("b", 0, 1)], [("b", 1, 4), ("c", 0, 3)], [("c", 3, 2), ("d", 0, 5)]]
    assert [data.shard_files(["a", "z", "c"], [5, 0, 7], 2, k) for k in range(2)] == [
        [("a", 0, 5), ("c", 0, 1)], [("c", 1, 6)]]
    assert [data.shard_files(["a", "b"], [12, 11], 5, k) for k in range(5)] == [
        [("a", 0, 4)], [("a", 4, 5)], [("a", 9, 3), ("b", 0, 1)], [("b", 1, 5)], [("b", 6, 5)]]
    assert data.shard_files(["a", "b"], [1, 1], 3, 0) == []  # more pipelines than records
    with pytest.raises(data.DatasetError, match=r"^input pipeline id 3 is not in \[0, 3\)$"):
        data.shard_files(files, [1, 1, 1, 1], 3, 3)
    with pytest.raises(data.DatasetError, match=r"^shard_files: 4 files but 3 record counts$"):
        data.shard_files(files, [1, 1, 1], 3, 0)


def _records(ds) -> list[tuple[int, bytes]]:
    """(label, stored CHW pixel bytes) of every image of a raw, labelled dataset, in order."""
    return [(int(lab), x.tobytes()) for xs, ys in ds for x, lab in zip(xs.numpy(), ys.numpy())]


def _level(path, lod: int) -> list[tuple[int, bytes]]:
    """The level's records in file order, read by take_images (Python, not tf.data)."""
    images, labels = data.take_images(path, lod, data.describe(path).count, labels=True)
    return [(int(lab), img.transpose(2, 0, 1).tobytes()) for img, lab in zip(images, labels)]


@pytest.mark.parametrize("mode", ["ordered", "in_memory", "streamed"])
@pytest.mark.parametrize("parts, pipelines", [(4, 3), (2, 5)])
def test_uneven_sharding_reads_equal_record_ranges(mnist_dir, two_part_dir, parts, pipelines,
                                                   mode):
    path = mnist_dir if parts == 4 else two_part_dir  # 100 records; 23 records (12 + 11)
    assert data.describe(path).parts[3] == parts
    full = _level(path, 1)
    n = len(full)
    kw = dict(shuffle=False) if mode == "ordered" else dict(seed=3,
                                                            in_memory=mode == "in_memory")
    shares = []
    for k in range(pipelines):
        ctx = tf.distribute.InputContext(pipelines, k, pipelines)
        shares.append(_records(data.make_dataset(path, 1, 1, labels=True, raw=True,
                                                 repeat=False, input_context=ctx, **kw)))
    for k, share in enumerate(shares):
        want = full[k * n // pipelines:(k + 1) * n // pipelines]
        assert share == want if mode == "ordered" else sorted(share) == sorted(want)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert sorted(sum(shares, [])) == sorted(full)  # disjoint and complete


def test_record_sharding_applies_limits(rgb_dir):
    d, _ = rgb_dir  # labels = record index; part 1 cut to its first 2 records (4, 5)
    limits = {data.describe(d).files[3][1]: 2}
    ids = [_ids(data.make_dataset(d, 1, 1, labels=True, shuffle=False, repeat=False,
                                  limits=limits,
                                  input_context=tf.distribute.InputContext(2, k, 2)))
           for k in range(2)]
    assert ids == [[0, 1, 2, 3, 4], [5, 8, 9, 10, 11]]


def test_streamed_slices_come_in_a_new_order_every_epoch(rgb_dir):
    d, _ = rgb_dir  # pipeline 1 of 2: records 6-11, slices part 1 [2, 4) and part 2 [0, 4)
    ctx = tf.distribute.InputContext(2, 1, 2)
    # windows of one record: the stream is the slices' records in slice order
    assert data.window_records(6, 8 * 8 * 3 + 64, 1, memory_bytes=600) == 1
    it = iter(data.make_dataset(d, 1, 1, labels=True, seed=1, in_memory=False,
                                memory_bytes=600, input_context=ctx))
    epochs = [tuple(int(next(it)[1][0]) for _ in range(6)) for _ in range(10)]
    orders = {(6, 7, 8, 9, 10, 11), (8, 9, 10, 11, 6, 7)}
    assert set(epochs) == orders


def _frames_plan_of(path, lod, batch_size, window, slices=None, stored=None, labels=False):
    info = data.describe(path)
    level = lod + 2
    files = info.files[level]
    stored = stored or dict(zip(files, info.records[level]))
    slices = slices or [(f, 0, stored[f]) for f in files]
    c, h, w = info.shape_at(level)
    template = data._template(files, c * h * w, labels)
    return data._frame_plan(slices, stored, template, batch_size, window), template


def test_frame_plan(rgb_dir, tmp_path):
    d, _ = rgb_dir  # 3 parts of 4 records
    # (records per read, reads per window): a read divides every slice, a window is whole
    # batches of whole reads
    assert _frames_plan_of(d, 1, 2, 8)[0] == (4, 2)
    assert _frames_plan_of(d, 1, 3, 9)[0] == (1, 9)  # reads of 4 or 2: windows of 0 or 6
    assert _frames_plan_of(d, 1, 3, 12)[0] == (4, 3)
    assert _frames_plan_of(d, 1, 2, 6)[0] == (2, 3)  # reads of 4: windows of 4
    assert _frames_plan_of(d, 1, 5, 5)[0] == (1, 5)
    files = data.describe(d).files[3]
    slices = [(files[0], 1, 3), (files[1], 0, 2)]  # record ranges: reads of 1
    assert _frames_plan_of(d, 1, 2, 4, slices=slices)[0] == (1, 4)
    # a file that is not all frames of the first record's length, a first record of another
    # layout, records that fit no template: read as TFRecords every pass
    stored = {f: 4 for f in files}
    stored[files[2]] = 5
    assert _frames_plan_of(d, 1, 2, 8, stored=stored)[0] is None
    plan, template = _frames_plan_of(d, 1, 2, 8)
    length, start, label_pos, keep, keep_val = template
    other = (length, start, label_pos, keep, keep_val ^ 1)
    slices = [(f, 0, 4) for f in files]
    assert data._frame_plan(slices, dict.fromkeys(files, 4), other, 2, 8) is None
    assert data._frame_plan(slices, dict.fromkeys(files, 4), None, 2, 8) is None
    imgs = smooth_images(8, 8, 1, seed=6)
    write_fixture(str(tmp_path), "b", imgs, labels=[3, 300, 5, 2 ** 33, 7, 128, 1, 9], parts=2)
    assert _frames_plan_of(str(tmp_path), 1, 2, 8)[0] is None


def test_frame_parser_checks_every_frame(rgb_dir):
    d, _ = rgb_dir
    _, template = _frames_plan_of(d, 1, 2, 8)
    files = data.describe(d).files[3]
    with open(files[1], "rb") as fh:
        reads = fh.read()  # 4 frames: records 4-7
    frame = len(reads) // 4
    to_rows = data._frame_parser(template)
    rows, y, ok = to_rows(tf.constant([reads[:2 * frame], reads[2 * frame:]]))
    assert bool(ok) and y.numpy().tolist() == [4, 5, 6, 7]
    start = template[1] + 12  # after the frame's length and its CRC
    want = [img for _, img in _level(d, 1)[4:8]]
    assert [r[start:start + len(want[0])].tobytes() for r in rows.numpy()] == want
    for at in (3, 12 + 1, frame + 8):  # length header, a fixed byte of the Example, its CRC
        bad = bytearray(reads)
        bad[at] ^= 0x40
        assert not bool(to_rows(tf.constant([bytes(bad)]))[2])


@pytest.mark.parametrize("raw", [True, False])
def test_later_passes_read_frames_and_yield_every_record(rgb_dir, raw):
    d, imgs = rgb_dir  # 12 records, labels = index; windows of 5 (10 records, then 2 left out)
    level = {lab: img for lab, img in _level(d, 1)}
    assert _frames_plan_of(d, 1, 5, 5)[0] is not None
    it = iter(data.make_dataset(d, 1, 5, labels=True, seed=4, raw=raw, mirror=not raw,
                                in_memory=False, memory_bytes=2303))
    batches = [next(it) for _ in range(2 + 12 * 3)]  # the first pass, then 15 passes
    ys = np.concatenate([b[1].numpy() for b in batches])
    assert len(set(ys[:10])) == 10
    np.testing.assert_array_equal(np.bincount(ys[10:], minlength=12), np.full(12, 15))
    for xs, labs in batches:
        for x, lab in zip(xs.numpy(), labs.numpy()):
            stored = np.frombuffer(level[int(lab)], np.uint8).reshape(3, 8, 8)
            if raw:
                np.testing.assert_array_equal(x, stored)
            else:
                img = stored.transpose(1, 2, 0).astype(np.float32) / 127.5 - 1
                assert np.array_equal(x, img) or np.array_equal(x, img[:, ::-1])


@pytest.mark.parametrize("pipelines", [3, 5])
def test_later_passes_of_record_ranges_and_limits(two_part_dir, rgb_dir, pipelines):
    full = _level(two_part_dir, 1)  # 12 + 11 records: slices start and end inside parts
    n = len(full)
    info = data.describe(two_part_dir)
    for k in range(pipelines):
        slices = data.shard_files(info.files[3], info.records[3], pipelines, k)
        assert _frames_plan_of(two_part_dir, 1, 1, 4, slices=slices)[0] is not None
        want = sorted(full[k * n // pipelines:(k + 1) * n // pipelines])
        ctx = tf.distribute.InputContext(pipelines, k, pipelines)
        it = iter(data.make_dataset(two_part_dir, 1, 1, labels=True, raw=True, seed=k,
                                    in_memory=False, input_context=ctx))
        passes = _records(next(it) for _ in range(len(want) * 4))
        assert [sorted(passes[i * len(want):(i + 1) * len(want)]) for i in range(4)] == \
            [want] * 4
    d, _ = rgb_dir  # part 1 cut to its first 2 records: 4 and 5 of 4-7
    limits = {data.describe(d).files[3][1]: 2}
    it = iter(data.make_dataset(d, 1, 2, labels=True, seed=0, in_memory=False,
                                memory_bytes=600, limits=limits))
    ys = np.concatenate([next(it)[1].numpy() for _ in range(25)])
    assert set(ys) == {0, 1, 2, 3, 4, 5, 8, 9, 10, 11}
    np.testing.assert_array_equal(np.bincount(ys[10:], minlength=12)[[0, 4, 5, 11]], [4] * 4)


def test_a_share_under_a_batch_is_an_error_when_made(rgb_dir):
    d, _ = rgb_dir  # 12 records, 3 parts
    info = data.describe(d)
    prefix = re.escape(info.prefix)
    for kw in (dict(shuffle=False), dict(in_memory=False)):
        with pytest.raises(data.DatasetError, match=rf"^{prefix}: the reader gets 12 records "
                                                    r"of level r03, fewer than its batch of 13 "
                                                    r"\(repeat=False: no whole batch\)$"):
            data.make_dataset(d, 1, 13, repeat=False, **kw)
    with pytest.raises(data.DatasetError, match=rf"^{prefix}: the reader gets 12 records of "
                                                r"level r03, fewer than its batch of 13 \(held "
                                                r"in memory: an epoch must hold a batch\)$"):
        data.make_dataset(d, 1, 13, in_memory=True)
    # 24 pipelines over 12 records: the even ones get none, even with repeat ...
    for shuffle in (False, True):
        with pytest.raises(data.DatasetError, match=rf"^{prefix}: input pipeline 22 of 24 gets 0 "
                                                    r"records of level r03, fewer than its "
                                                    r"batch of 1$"):
            data.make_dataset(d, 1, 1, shuffle=shuffle,
                              input_context=tf.distribute.InputContext(24, 22, 24))
    # ... and the odd ones one each
    assert _ids(data.make_dataset(d, 1, 1, labels=True, shuffle=False, repeat=False,
                                  input_context=tf.distribute.InputContext(24, 23, 24))) == [11]
    limits = {f: 1 for f in info.files[3]}
    with pytest.raises(data.DatasetError, match=r"the reader gets 3 records of level r03, fewer "
                                                r"than its batch of 4 \(held in memory"):
        data.make_dataset(d, 1, 4, in_memory=True, limits=limits)
    assert sorted(_ids(data.make_dataset(d, 1, 3, labels=True, in_memory=True, repeat=False,
                                         limits=limits))) == [0, 4, 8]


@pytest.mark.parametrize("lod", [1.5, "2", None, True, 2.0])
def test_lod_that_is_no_int_is_an_error(rgb_dir, lod):
    with pytest.raises(data.DatasetError,
                       match=rf"^lod {re.escape(repr(lod))} must be an int \(0 is 4x4\)$"):
        data.make_dataset(rgb_dir[0], lod, 4)


def test_odd_arguments_are_named(rgb_dir):
    d, _ = rgb_dir  # 16 px: lod 0..2
    prefix = re.escape(data.describe(d).prefix)
    for lod in (-1, 3, 10 ** 6):
        with pytest.raises(data.DatasetError, match=rf"^{prefix}: lod {lod} is not in the dataset: "
                                                    r"it has lod 0\.\.2 \(4x4 to 16x16, "
                                                    r"levels r02\.\.r04\)$"):
            data.make_dataset(d, lod, 4)
    for seed in (1.5, "x", True):
        with pytest.raises(data.DatasetError,
                           match=rf"^seed {re.escape(repr(seed))} must be None or an int$"):
            data.make_dataset(d, 1, 4, seed=seed)
    with pytest.raises(data.DatasetError, match=r"^path 3 must be a str, bytes or os\.PathLike$"):
        data.make_dataset(3, 1, 4)
    with pytest.raises(data.DatasetError, match=r"^batch_size True must be a positive int$"):
        data.make_dataset(d, 1, True)

    def ids(path, lod=1, seed=7):
        return _ids(data.make_dataset(path, lod, 4, labels=True, seed=seed, repeat=False))

    want = ids(d)
    assert sorted(want) == list(range(12))
    # numpy integers, bytes and os.PathLike paths are accepted and mean the same
    assert ids(d, lod=np.int64(1), seed=np.int32(7)) == want
    assert ids(os.fsencode(d)) == want and ids(pathlib.Path(d)) == want


def test_distribute_datasets_from_function(rgb_dir):
    d, _ = rgb_dir
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    global_batch = 4

    def dataset_fn(ctx):
        return data.make_dataset(d, 2, ctx.get_per_replica_batch_size(global_batch),
                                 labels=True, mirror=True, input_context=ctx, seed=0)

    dist = strategy.distribute_datasets_from_function(dataset_fn)
    it = iter(dist)

    @tf.function
    def step(batch):
        x, y = batch
        return strategy.run(lambda a, b: (tf.reduce_sum(tf.ones_like(b)), tf.shape(a)),
                            args=(x, y))

    for _ in range(4):
        n, shape = step(next(it))
        assert int(strategy.reduce("SUM", n, axis=None)) == global_batch
    assert list(strategy.experimental_local_results(shape)[0].numpy()) == [2, 16, 16, 3]


def test_errors_before_reading(mnist_dir, tmp_path):
    with pytest.raises(data.DatasetError, match="no such folder"):
        data.make_dataset(str(tmp_path / "nope" / "x"), 0, 4)
    with pytest.raises(data.DatasetError, match=r"mn: lod 4 is not in the dataset: it has lod "
                                                r"0\.\.3 \(4x4 to 32x32, levels r02\.\.r05\)$"):
        data.make_dataset(mnist_dir, 4, 4)
    with pytest.raises(data.DatasetError, match="batch_size"):
        data.make_dataset(mnist_dir, 0, 0)


def _copy(src, dst, name):
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f.startswith(name + "-") or f.startswith(name + "."):
            shutil.copy(os.path.join(src, f), dst)
    return dst


def _rewrite(path, fn):
    recs = [r for _, r in fmt.iter_records(path)]
    recs = fn(recs)
    with tf.io.TFRecordWriter(path) as w:
        for r in recs:
            w.write(r)


def test_truncated_file_is_named_before_reading(mnist_dir, tmp_path):
    d = _copy(mnist_dir, str(tmp_path), "mn")
    f = os.path.join(d, "mn-r04.tfrecords.001")
    size = os.path.getsize(f)
    with open(f, "r+b") as fh:
        fh.truncate(size - 100)
    with pytest.raises(data.DatasetError, match=r"mn-r04\.tfrecords\.001: .*bytes but the "
                                                r"manifest"):
        data.make_dataset(d, 2, 4)
    os.remove(os.path.join(d, "mn.manifest.json"))  # foreign dataset: framing is scanned
    with pytest.raises(data.DatasetError, match=r"mn-r04\.tfrecords\.001: record 24: "
                                                r"truncated"):
        data.make_dataset(d, 2, 4)


@pytest.mark.parametrize("kind", ["shape", "garbage", "nolabel"])
def test_corrupt_record_error_names_file_and_record(mnist_dir, tmp_path, kind):
    d = _copy(mnist_dir, str(tmp_path), "mn")
    os.remove(os.path.join(d, "mn.manifest.json"))
    f = os.path.join(d, "mn-r03.tfrecords.002")
    bad = {"shape": fmt.encode_example(np.zeros((1, 8, 9), np.uint8), 1),
           "garbage": b"\x08\x96\x01 not an example",
           "nolabel": fmt.encode_example(np.zeros((1, 8, 8), np.uint8))}[kind]
    _rewrite(f, lambda recs: recs[:7] + [bad] + recs[8:])
    ds = data.make_dataset(d, 1, 5, labels=True, repeat=False, shuffle=False)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"mn-r03\.tfrecords\.002: record 7: "):
        for _ in ds:
            pass
    with pytest.raises(data.DatasetError, match=r"mn-r03\.tfrecords\.002: record 7"):
        for _ in data.checked(data.make_dataset(d, 1, 5, labels=True, seed=0), d, 1, True):
            pass
    with pytest.raises(tf.errors.InvalidArgumentError,  # streamed in windows
                       match=r"mn-r03\.tfrecords\.002: record 7: "):
        for _ in data.make_dataset(d, 1, 5, labels=True, in_memory=False, repeat=False):
            pass


def test_garbage_that_looks_like_an_example_is_named_through_checked(mnist_dir, tmp_path):
    d = _copy(mnist_dir, str(tmp_path), "mn")
    os.remove(os.path.join(d, "mn.manifest.json"))
    f = os.path.join(d, "mn-r02.tfrecords.001")
    _rewrite(f, lambda recs: recs[:3] + [b"\n\xff\xff\xff\xff\x0f\xfe\xfd"] + recs[4:])
    with pytest.raises((tf.errors.InvalidArgumentError, UnicodeDecodeError)):
        for _ in data.make_dataset(d, 0, 5, repeat=False):
            pass
    with pytest.raises(data.DatasetError, match=r"mn-r02\.tfrecords\.001: record 3: malformed"):
        for _ in data.checked(data.make_dataset(d, 0, 5, repeat=False), d, 0):
            pass


def test_crc_corruption_is_named_through_checked(mnist_dir, tmp_path):
    d = _copy(mnist_dir, str(tmp_path), "mn")
    f = os.path.join(d, "mn-r05.tfrecords.003")
    frames = fmt.scan_records(f)
    with open(f, "r+b") as fh:  # flip a pixel byte of record 11 (CRC no longer matches)
        fh.seek(frames[11][0] + 200)
        b = fh.read(1)
        fh.seek(frames[11][0] + 200)
        fh.write(bytes([b[0] ^ 0xFF]))
    ds = data.make_dataset(d, 3, 5, repeat=False)
    with pytest.raises(tf.errors.DataLossError):
        for _ in ds:
            pass
    with pytest.raises(data.DatasetError, match=r"mn-r05\.tfrecords\.003: record 11: corrupt "
                                                r"data \(CRC"):
        for _ in data.checked(ds, d, 3):
            pass


def test_steps_per_epoch(mnist_dir):
    info = data.describe(mnist_dir)
    assert data.steps_per_epoch(info, 8) == 12 and data.steps_per_epoch(info, 8, 2) == 6
