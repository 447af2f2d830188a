"""tfrecords_tools.format: Example encoding, TFRecord framing, names, manifest, describe."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfrecords_tools import format as fmt
from tests.helpers_data import write_fixture, smooth_images


def test_encode_example_parses_with_tensorflow():
    img = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    for label in (None, 0, 7, 300, 2 ** 40):
        ex = tf.train.Example.FromString(fmt.encode_example(img, label))
        f = ex.features.feature
        assert list(f["shape"].int64_list.value) == [2, 4, 4]
        assert f["data"].bytes_list.value[0] == img.tobytes()
        if label is None:
            assert "label" not in f
        else:
            assert list(f["label"].int64_list.value) == [label]


def test_decode_example_reads_tensorflow_serialization():
    img = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    ex = tf.train.Example(features=tf.train.Features(feature={
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[-3])),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img.tobytes()])),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=[3, 8, 8])),
        "f": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, 2.0])),
    }))
    d = fmt.decode_example(ex.SerializeToString())
    assert d["shape"] == [3, 8, 8] and d["label"] == [-3] and d["f"] == [0.5, 2.0]
    back, label = fmt.fields_to_image(d)
    np.testing.assert_array_equal(back, img)
    with pytest.raises(fmt.DatasetError, match="malformed"):
        fmt.decode_example(b"\xff\xfe garbage")


def test_check_fields_names_the_problem():
    good = fmt.decode_example(fmt.encode_example(np.zeros((1, 4, 4), np.uint8), 1))
    assert fmt.check_fields(good, (1, 4, 4), need_label=True) is None
    assert "needs [1, 8, 8]" in fmt.check_fields(good, (1, 8, 8))
    short = dict(good, data=[b"\0" * 15])
    assert "15 bytes" in fmt.check_fields(short)
    assert "label" in fmt.check_fields(dict(good, label=[]), need_label=True)


def test_crc32c_and_framing_match_tensorflow(tmp_path):
    assert fmt.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    recs = [fmt.encode_example(np.full((1, 4, 4), i, np.uint8)) for i in range(5)]
    ours = tmp_path / "ours.tfrecords"
    ours.write_bytes(b"".join(fmt.frame_record(r) for r in recs))
    theirs = tmp_path / "theirs.tfrecords"
    with tf.io.TFRecordWriter(str(theirs)) as w:
        for r in recs:
            w.write(r)
    assert ours.read_bytes() == theirs.read_bytes()
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == recs
    assert [r for _, r in fmt.iter_records(str(theirs))] == recs


CRC32C_VECTORS = [  # the check value, and RFC 3720's (iSCSI) B.4 vectors
    (b"", 0), (b"123456789", 0xE3069283), (bytes(32), 0x8A9136AA), (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E), (bytes(range(31, -1, -1)), 0x113FDB5C)]


def test_crc32c_c_and_python_agree():
    for data, crc in CRC32C_VECTORS:
        assert fmt.crc32c_python(data) == crc
        assert fmt.crc32c(data) == crc
    google_crc32c = pytest.importorskip("google_crc32c")  # a dependency: installed by pip
    assert fmt.CRC32C_IMPLEMENTATION == google_crc32c.implementation
    if google_crc32c.implementation == "c":
        assert fmt.crc32c is google_crc32c.value
    rng = np.random.default_rng(0)
    for n in [1, 3, 8, 63, 64, 1000, 4099]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert google_crc32c.value(data) == fmt.crc32c_python(data)


def test_scan_records_reports_truncation_with_record_index(tmp_path):
    p = tmp_path / "x.tfrecords"
    recs = [fmt.frame_record(fmt.encode_example(np.zeros((1, 4, 4), np.uint8)))] * 4
    blob = b"".join(recs)
    p.write_bytes(blob[:-5])
    with pytest.raises(fmt.DatasetError, match=r"x\.tfrecords: record 3: truncated"):
        fmt.scan_records(str(p))
    p.write_bytes(blob + b"\x01\x02")
    with pytest.raises(fmt.DatasetError, match="record 4: truncated header"):
        fmt.scan_records(str(p))
    bad = bytearray(blob)
    bad[len(recs[0]) + 2] ^= 0xFF  # length of record 1
    p.write_bytes(bytes(bad))
    with pytest.raises(fmt.DatasetError, match="record 1: corrupt length header"):
        fmt.scan_records(str(p))


def test_names():
    assert fmt.level_filename("ffhq", 10, 3) == "ffhq-r10.tfrecords.003"
    assert fmt.level_filename("ffhq", 2) == "ffhq-r02.tfrecords"
    assert fmt.parse_filename("/a/my-set-r05.tfrecords.012") == ("my-set", 5, 12)
    assert fmt.parse_filename("my-set-r05.tfrecords") == ("my-set", 5, None)
    assert fmt.parse_filename("my-set-r05.labels") is None
    assert fmt.level_of_resolution(256) == 8 and fmt.level_of_resolution(4) == 2
    with pytest.raises(fmt.DatasetError):
        fmt.level_of_resolution(48)


def _fixture(tmp_path, name="ds", parts=2, n=6, size=16, labels=True):
    imgs = smooth_images(n, size, 3)
    write_fixture(str(tmp_path), name, imgs, list(range(n)) if labels else None, parts=parts)
    return imgs


def test_describe_release_and_stylegan_layouts(tmp_path):
    _fixture(tmp_path / "rel", parts=2)
    info = fmt.describe(str(tmp_path / "rel"))
    assert (info.name, info.levels, info.resolution, info.channels, info.count) == \
        ("ds", [2, 3, 4], 16, 3, 6)
    assert info.has_labels and info.layout == "parts" and info.parts == {2: 2, 3: 2, 4: 2}
    assert info.records[4] == [3, 3] and info.manifest is None and info.level_at(16) == 4
    _fixture(tmp_path / "sg", parts=None, labels=False)
    info = fmt.describe(str(tmp_path / "sg" / "ds-r03.tfrecords"))
    assert info.layout == "stylegan" and not info.has_labels and info.parts[4] == 1


def test_find_datasets_rules(tmp_path):
    _fixture(tmp_path, "a")
    _fixture(tmp_path, "b")
    d = str(tmp_path)
    assert [n for _, n in fmt.find_datasets(d)] == ["a", "b"]
    assert fmt.resolve(os.path.join(d, "b"))[1] == "b"
    assert fmt.resolve(os.path.join(d, "a-r0*.tfrecords.*"))[1] == "a"
    with pytest.raises(fmt.DatasetError, match="holds 2 datasets"):
        fmt.resolve(d)
    _fixture(tmp_path / "pair", "m")
    _fixture(tmp_path / "pair", "m_test", n=2)
    assert fmt.resolve(str(tmp_path / "pair"))[1] == "m"  # NAME with its NAME_test


def test_describe_errors_are_one_line_dataset_errors(tmp_path):
    with pytest.raises(fmt.DatasetError, match="no such folder"):
        fmt.describe(str(tmp_path / "nope" / "x"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(fmt.DatasetError, match="no dataset found"):
        fmt.describe(str(tmp_path / "empty"))
    _fixture(tmp_path / "gap")  # a level absent: read at the levels it has
    os.remove(tmp_path / "gap" / "ds-r03.tfrecords.000")
    os.remove(tmp_path / "gap" / "ds-r03.tfrecords.001")
    info = fmt.describe(str(tmp_path / "gap"))
    assert info.levels == [2, 4] and info.level_at(4) == 2
    with pytest.raises(fmt.DatasetError, match=r"gap/ds: no 8x8 images \(level r03\); the dataset "
                                               r"holds r02 \(4x4\), r04 \(16x16\)$"):
        info.level_at(8)
    _fixture(tmp_path / "part")
    os.remove(tmp_path / "part" / "ds-r04.tfrecords.000")
    with pytest.raises(fmt.DatasetError, match="r04 misses part.*000"):
        fmt.describe(str(tmp_path / "part"))
    _fixture(tmp_path / "count")
    imgs = smooth_images(5, 16, 3)
    write_fixture(str(tmp_path / "other"), "ds", imgs, list(range(5)), parts=2)
    os.replace(tmp_path / "other" / "ds-r02.tfrecords.001", tmp_path / "count" /
               "ds-r02.tfrecords.001")
    with pytest.raises(fmt.DatasetError, match="different record counts"):
        fmt.describe(str(tmp_path / "count"))
    _fixture(tmp_path / "res")  # a 16x16 record in the 8x8 level
    shutil.copy(tmp_path / "res" / "ds-r04.tfrecords.000", tmp_path / "res" /
                "ds-r03.tfrecords.000")
    with pytest.raises(fmt.DatasetError, match=r"ds-r03\.tfrecords\.000: record 0: shape"):
        fmt.describe(str(tmp_path / "res"))


def test_manifest_is_used_and_checked(tmp_path):
    _fixture(tmp_path)
    info = fmt.describe(str(tmp_path))
    files = {str(r): [{"file": os.path.basename(f), "records": n,
                       "bytes": os.path.getsize(f)} for f, n in zip(info.files[r],
                                                                    info.records[r])]
             for r in info.levels}
    m = {"format": fmt.FORMAT_NAME, "format_version": 1, "name": "ds", "levels": info.levels,
         "count": 6, "channels": 3, "labels": True, "num_classes": 6, "files": files}
    fmt.write_manifest(fmt.manifest_path(str(tmp_path), "ds"), m)
    info2 = fmt.describe(str(tmp_path))
    assert info2.manifest["num_classes"] == 6 and info2.num_classes == 6
    assert info2.files == info.files and info2.count == 6
    with open(info.files[3][1], "ab") as f:
        f.write(b"junk")
    with pytest.raises(fmt.DatasetError, match=r"ds-r03\.tfrecords\.001: .* bytes but the "
                                               r"manifest records"):
        fmt.describe(str(tmp_path))
    p = fmt.manifest_path(str(tmp_path), "ds")
    with open(p, "w") as f:
        json.dump({"format": "other"}, f)
    with pytest.raises(fmt.DatasetError, match="not a alae-multilod-tfrecords manifest"):
        fmt.describe(str(tmp_path))
