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


def _ids(ds):
    return [int(v) for b in ds for v in b[1].numpy()]


def test_describe(mnist_dir):
    info = data.describe(mnist_dir)  # the folder holds mn and mn_test: it means mn
    assert (info.name, info.levels, info.resolution, info.channels, info.count) == \
        ("mn", [2, 3, 4, 5], 32, 1, 100)
    assert info.has_labels and info.parts == {r: 4 for r in range(2, 6)}
    assert info.manifest is not None and info.num_classes == 10
    assert len(info.files[5]) == 4 and all(os.path.isfile(f) for f in info.files[5])
    assert data.describe(os.path.join(mnist_dir, "mn_test")).count == 20


@pytest.mark.parametrize("resolution", [4, 8, 16, 32])
def test_round_trip_every_level(mnist_dir, resolution):
    batches = all_records(data.make_dataset(mnist_dir, resolution, 10, labels=True,
                                            shuffle=False, repeat=False))
    assert len(batches) == 10
    x, y = batches[0]
    assert x.shape == (10, resolution, resolution, 1) and x.dtype == np.uint8 and y.dtype == np.int64
    images, labels = data.take_images(mnist_dir, resolution, 100, labels=True)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)


def test_release_and_stylegan_layouts(rgb_dir, tmp_path):
    d, imgs = rgb_dir
    x, y = next(iter(data.make_dataset(d, 16, 12, labels=True, shuffle=False, repeat=False)))
    np.testing.assert_array_equal(y, np.arange(12))
    np.testing.assert_array_equal(x, imgs)  # CHW records, NHWC batches
    assert not data.describe(d).manifest
    imgs = smooth_images(6, 8, 3, seed=2)
    write_fixture(str(tmp_path), "sg", imgs, labels=None, parts=None)
    assert sorted(os.listdir(tmp_path)) == ["sg-r02.tfrecords", "sg-r03.tfrecords"]
    x = next(iter(data.make_dataset(str(tmp_path), 8, 6, shuffle=False, repeat=False)))
    np.testing.assert_array_equal(x, imgs)
    with pytest.raises(data.DatasetError, match="labels=True but the dataset has no 'label'"):
        data.make_dataset(str(tmp_path), 8, 6, labels=True)


def test_other_key_order_and_big_labels(tmp_path):
    imgs = smooth_images(8, 8, 1, seed=4)
    labels = [0, 300, 5, 2 ** 33, 7, 128, 1, 9]  # multi-byte varints
    write_fixture(str(tmp_path), "k", imgs, labels=labels, parts=2,
                  key_order=("label", "data", "shape"))
    x, y = next(iter(data.make_dataset(str(tmp_path), 8, 8, labels=True, shuffle=False,
                                       repeat=False)))
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x, imgs)
    x, y = next(iter(data.make_dataset(str(tmp_path), 8, 8, labels=True, seed=0, repeat=False)))
    assert sorted(y.numpy()) == sorted(labels)
    for img, lab in zip(x.numpy(), y.numpy()):
        np.testing.assert_array_equal(img, imgs[labels.index(lab)])


def test_partial_levels_are_read_at_the_levels_present(rgb_dir, tmp_path):
    """The release's held-out sets hold only their top level."""
    src, imgs = rgb_dir
    for f in os.listdir(src):
        if "-r04." in f:
            shutil.copy(os.path.join(src, f), tmp_path)
    info = data.describe(str(tmp_path))
    assert info.levels == [4] and info.count == 12
    x, y = next(iter(data.make_dataset(str(tmp_path), 16, 12, labels=True, shuffle=False)))
    np.testing.assert_array_equal(x, imgs)
    np.testing.assert_array_equal(data.take_images(str(tmp_path), 16, 12), imgs)
    with pytest.raises(data.DatasetError, match=r"rel: no 8x8 images \(level r03\); the dataset "
                                                r"holds r04 \(16x16\)$"):
        data.make_dataset(str(tmp_path), 8, 4)


def test_shuffle_repeat_and_seed(mnist_dir):
    def first(n, **kw):
        it = iter(data.make_dataset(mnist_dir, 8, 25, **kw))
        return np.concatenate([next(it).numpy() for _ in range(n)])

    a, b = first(40, seed=3), first(40, seed=3)  # 10 passes of 100: repeats, same order
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, first(40, seed=4))
    plain = np.concatenate(all_records(data.make_dataset(mnist_dir, 8, 25, shuffle=False,
                                                         repeat=False)))
    key = lambda x: sorted(map(bytes, x.reshape(len(x), -1)))  # noqa: E731
    for seed in (None, 5):  # one shuffled pass: a permutation of the level, not its file order
        once = np.concatenate(all_records(data.make_dataset(mnist_dir, 8, 25, repeat=False,
                                                            seed=seed)))
        assert key(once) == key(plain) and not np.array_equal(once, plain)
    # every record comes about as often as the others
    index = {bytes(img): i for i, img in enumerate(plain.reshape(100, -1))}
    counts = np.bincount([index[bytes(img)] for img in a.reshape(1000, -1)], minlength=100)
    assert counts.min() >= 4 and counts.max() <= 16


def test_shuffle_buffer_follows_the_memory_budget(rgb_dir):
    d, _ = rgb_dir  # 3 parts of 4 records, labels = record index; 8x8x3 + 64 = 256 bytes
    # a buffer of one record: no record shuffle, only the order of the parts (read 3 at once)
    ys = _ids(data.make_dataset(d, 8, 12, labels=True, seed=1, repeat=False, shuffle_bytes=256))
    parts = [ys[p::3] for p in range(3)]
    assert sorted(parts) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    mixed = _ids(data.make_dataset(d, 8, 12, labels=True, seed=1, repeat=False))
    assert sorted(mixed) == list(range(12)) and [mixed[p::3] for p in range(3)] != parts
    with pytest.raises(data.DatasetError, match=r"^shuffle_bytes 0 must be an int >= 1$"):
        data.make_dataset(d, 8, 5, shuffle_bytes=0)


def test_mirror_flips_some_images(rgb_dir):
    d, imgs = rgb_dir
    flips = 0
    for seed in range(3):
        x, y = next(iter(data.make_dataset(d, 16, 12, labels=True, mirror=True, shuffle=False,
                                           repeat=False, seed=seed)))
        for img, lab in zip(x.numpy(), y.numpy()):
            if not np.array_equal(img, imgs[lab]):
                np.testing.assert_array_equal(img, imgs[lab][:, ::-1])  # along the width
                flips += 1
    assert 0 < flips < 36
    twice = [all_records(data.make_dataset(d, 16, 4, labels=True, mirror=True, seed=9,
                                           repeat=False)) for _ in range(2)]
    for (x, y), (x2, y2) in zip(*twice):  # the same seed, the same flips
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("pipelines", [2, 3, 5])
def test_sharding_is_disjoint_and_complete(rgb_dir, pipelines):
    d, _ = rgb_dir  # 3 parts of 4 records (labels = record index): 3 pipelines by part
    seen = []
    for k in range(pipelines):
        ctx = tf.distribute.InputContext(pipelines, k, pipelines)
        ids = _ids(data.make_dataset(d, 8, 1, labels=True, repeat=False, input_context=ctx))
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


def _level(path, resolution: int) -> list[tuple[int, bytes]]:
    """(label, pixel bytes) of the level's records in file order, read by take_images."""
    images, labels = data.take_images(path, resolution, data.describe(path).count, labels=True)
    return [(int(lab), img.tobytes()) for img, lab in zip(images, labels)]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("parts, pipelines", [(4, 3), (2, 5)])
def test_uneven_sharding_reads_equal_record_ranges(mnist_dir, two_part_dir, parts, pipelines,
                                                   shuffle):
    path = mnist_dir if parts == 4 else two_part_dir  # 100 records; 23 records (12 + 11)
    assert data.describe(path).parts[3] == parts
    full = _level(path, 8)
    n = len(full)
    shares = []
    for k in range(pipelines):
        ds = data.make_dataset(path, 8, 1, labels=True, repeat=False, shuffle=shuffle, seed=3,
                               input_context=tf.distribute.InputContext(pipelines, k, pipelines))
        shares.append([(int(lab), x.tobytes()) for xs, ys in ds for x, lab in zip(xs.numpy(), ys.numpy())])
    for k, share in enumerate(shares):
        want = full[k * n // pipelines:(k + 1) * n // pipelines]
        assert sorted(share) == sorted(want) and (shuffle or share == want)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_sharding_applies_limits_and_needs_a_record(rgb_dir):
    d, _ = rgb_dir  # labels = record index; part 1 cut to its first 2 records (4, 5)
    info = data.describe(d)
    limits = {info.files[3][1]: 2}
    ids = [_ids(data.make_dataset(d, 8, 1, labels=True, shuffle=False, repeat=False,
                                  limits=limits,
                                  input_context=tf.distribute.InputContext(2, k, 2)))
           for k in range(2)]
    assert ids == [[0, 1, 2, 3, 4], [5, 8, 9, 10, 11]]
    it = iter(data.make_dataset(d, 8, 5, labels=True, seed=0, limits=limits))
    assert set(np.concatenate([next(it)[1].numpy() for _ in range(10)])) == \
        {0, 1, 2, 3, 4, 5, 8, 9, 10, 11}
    # a share under a batch: repeated into whole batches, or one smaller batch
    assert [len(y) for _, y in all_records(data.make_dataset(d, 8, 20, labels=True,
                                                             repeat=False))] == [12]
    it = iter(data.make_dataset(d, 8, 20, labels=True, seed=0))
    ys = [next(it)[1].numpy() for _ in range(3)]
    assert [len(y) for y in ys] == [20] * 3 and set(np.concatenate(ys)) == set(range(12))
    # 24 pipelines over 12 records: the even ones get none ...
    with pytest.raises(data.DatasetError, match=rf"^{re.escape(info.prefix)}: input pipeline 22 "
                                                r"of 24 gets no record of level r03 \(12 "
                                                r"records over 24 pipeline\(s\)\)$"):
        data.make_dataset(d, 8, 1, input_context=tf.distribute.InputContext(24, 22, 24))
    # ... and the odd ones one each
    assert _ids(data.make_dataset(d, 8, 1, labels=True, shuffle=False, repeat=False,
                                  input_context=tf.distribute.InputContext(24, 23, 24))) == [11]


def test_arguments_are_checked(rgb_dir, mnist_dir, tmp_path):
    d, _ = rgb_dir  # 16 px: 4x4 .. 16x16
    prefix = re.escape(data.describe(d).prefix)
    for res in (32, 2 ** 20):
        with pytest.raises(data.DatasetError, match=rf"^{prefix}: no {res}x{res} images \(level "
                                                    rf"r\d\d\); the dataset holds r02 \(4x4\), "
                                                    r"r03 \(8x8\), r04 \(16x16\)$|above the"):
            data.make_dataset(d, res, 4)
    for res in (12, 2, 0):
        with pytest.raises(data.DatasetError, match=rf"resolution {res} "):
            data.make_dataset(d, res, 4)
    for res in (8.0, "8", None, True):
        with pytest.raises(data.DatasetError,
                           match=rf"^resolution {re.escape(repr(res))} must be an int >= 1$"):
            data.make_dataset(d, res, 4)
    for seed in (1.5, "x", True, -1):
        with pytest.raises(data.DatasetError,
                           match=rf"^seed {re.escape(repr(seed))} must be an int >= 0$"):
            data.make_dataset(d, 8, 4, seed=seed)
    with pytest.raises(data.DatasetError, match=r"^path 3 must be a str, bytes or os\.PathLike$"):
        data.make_dataset(3, 8, 4)
    for batch in (True, 0):
        with pytest.raises(data.DatasetError, match=rf"^batch_size {batch} must be an int >= 1$"):
            data.make_dataset(d, 8, batch)
    with pytest.raises(data.DatasetError, match="no such folder"):
        data.make_dataset(str(tmp_path / "nope" / "x"), 4, 4)

    def ids(path, res=8, seed=7):
        return _ids(data.make_dataset(path, res, 4, labels=True, seed=seed, repeat=False))

    want = ids(d)
    assert sorted(want) == list(range(12))
    # numpy integers, bytes and os.PathLike paths are accepted and mean the same
    assert ids(d, res=np.int64(8), seed=np.int32(7)) == want
    assert ids(os.fsencode(d)) == want and ids(pathlib.Path(d)) == want


def test_distribute_datasets_from_function(rgb_dir):
    d, _ = rgb_dir
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    global_batch = 4

    def dataset_fn(ctx):
        return data.make_dataset(d, 16, ctx.get_per_replica_batch_size(global_batch),
                                 labels=True, mirror=True, input_context=ctx, seed=0)

    it = iter(strategy.distribute_datasets_from_function(dataset_fn))

    @tf.function
    def step(batch):
        x, y = batch
        return strategy.run(lambda a, b: (tf.reduce_sum(tf.ones_like(b)), tf.shape(a)),
                            args=(x, y))

    for _ in range(4):
        n, shape = step(next(it))
        assert int(strategy.reduce("SUM", n, axis=None)) == global_batch
    assert list(strategy.experimental_local_results(shape)[0].numpy()) == [2, 16, 16, 3]


def _copy(src, dst, name):
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f.startswith(name + "-") or f.startswith(name + "."):
            shutil.copy(os.path.join(src, f), dst)
    return dst


def _rewrite(path, fn):
    recs = fn([r for _, r in fmt.iter_records(path)])
    with tf.io.TFRecordWriter(path) as w:
        for r in recs:
            w.write(r)


def test_truncated_file_is_named_before_reading(mnist_dir, tmp_path):
    d = _copy(mnist_dir, str(tmp_path), "mn")
    f = os.path.join(d, "mn-r04.tfrecords.001")
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) - 100)
    with pytest.raises(data.DatasetError, match=r"mn-r04\.tfrecords\.001: .*bytes but the "
                                                r"manifest"):
        data.make_dataset(d, 16, 4)
    os.remove(os.path.join(d, "mn.manifest.json"))  # foreign dataset: framing is scanned
    with pytest.raises(data.DatasetError, match=r"mn-r04\.tfrecords\.001: record 24: "
                                                r"truncated"):
        data.make_dataset(d, 16, 4)


@pytest.mark.parametrize("kind", ["shape", "garbage", "nolabel"])
def test_corrupt_record_error_names_file_and_record(mnist_dir, tmp_path, kind):
    d = _copy(mnist_dir, str(tmp_path), "mn")
    os.remove(os.path.join(d, "mn.manifest.json"))
    f = os.path.join(d, "mn-r03.tfrecords.002")
    bad = {"shape": fmt.encode_example(np.zeros((1, 8, 9), np.uint8), 1),
           "garbage": b"\x08\x96\x01 not an example",
           "nolabel": fmt.encode_example(np.zeros((1, 8, 8), np.uint8))}[kind]
    _rewrite(f, lambda recs: recs[:7] + [bad] + recs[8:])
    for kw in (dict(repeat=False, shuffle=False), dict(repeat=False, seed=1)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"mn-r03\.tfrecords\.002: record 7: "):
            for _ in data.make_dataset(d, 8, 5, labels=True, **kw):
                pass
    with pytest.raises(data.DatasetError, match=r"mn-r03\.tfrecords\.002: record 7"):
        for _ in data.checked(data.make_dataset(d, 8, 5, labels=True, seed=0), d, 8, True):
            pass


def test_garbage_that_looks_like_an_example_is_named_through_checked(mnist_dir, tmp_path):
    d = _copy(mnist_dir, str(tmp_path), "mn")
    os.remove(os.path.join(d, "mn.manifest.json"))
    f = os.path.join(d, "mn-r02.tfrecords.001")
    _rewrite(f, lambda recs: recs[:3] + [b"\n\xff\xff\xff\xff\x0f\xfe\xfd"] + recs[4:])
    with pytest.raises((tf.errors.InvalidArgumentError, UnicodeDecodeError)):
        for _ in data.make_dataset(d, 4, 5, repeat=False):
            pass
    with pytest.raises(data.DatasetError, match=r"mn-r02\.tfrecords\.001: record 3: malformed"):
        for _ in data.checked(data.make_dataset(d, 4, 5, repeat=False), d, 4):
            pass


def test_crc_corruption_is_found_on_every_pass(mnist_dir, tmp_path):
    d = _copy(mnist_dir, str(tmp_path), "mn")
    f = os.path.join(d, "mn-r05.tfrecords.003")
    frames = fmt.scan_records(f)

    def flip_byte():  # a pixel byte of record 11: its CRC no longer matches
        with open(f, "r+b") as fh:
            fh.seek(frames[11][0] + 200)
            b = fh.read(1)
            fh.seek(frames[11][0] + 200)
            fh.write(bytes([b[0] ^ 0xFF]))

    it = iter(data.make_dataset(d, 32, 25, shuffle=False))
    for _ in range(4):  # the first pass is clean
        next(it)
    flip_byte()  # damaged while the stream runs: a later pass finds it
    with pytest.raises(tf.errors.DataLossError):
        for _ in range(40):
            next(it)
    ds = data.make_dataset(d, 32, 5, repeat=False)
    with pytest.raises(data.DatasetError, match=r"mn-r05\.tfrecords\.003: record 11: corrupt "
                                                r"data \(CRC"):
        for _ in data.checked(ds, d, 32):
            pass
    limits, lost, notes = data.usable_records(d, 32)
    assert limits == {f: 11} and lost == 14 and notes == [
        f"{f}: record 11: corrupt data (CRC mismatch); skipping 14 record(s) (records 11..end)"]
