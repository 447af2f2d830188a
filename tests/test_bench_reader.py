"""tfrecords_tools.bench's reader table: every variant measured, each with the path it took."""
import os

import pytest

from tfrecords_tools import bench
from tfrecords_tools.writer import convert


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("b"))
    convert(source="mnist5k", output_dir=d, name="b", max_images=300, parts=2, workers=1)
    return d + "/b"


def test_reader_rows(small_set):
    rows = bench.bench_reader(small_set, 16, 0.05, 1, "mn")
    assert [r["level"] for r in rows] == [2, 3, 4, 5]
    for r in rows:
        assert r["bare_img_s"] > 0 and 0 < r["bare_cores"] < 64  # CPU time / wall time
        for k in bench.READER_VARIANTS:
            assert r[f"{k}_img_s"] > 0
            assert r[f"{k}_ratio"] == pytest.approx(r[f"{k}_img_s"] / r["bare_img_s"], rel=0.01)
            assert 0 < r[f"{k}_cores"] < 64
            # the busiest thread's CPU per image (Linux): at most all of the process's
            if os.path.isdir("/proc/self/task"):
                us = r[f"{k}_cores"] / r[f"{k}_img_s"] * 1e6
                assert 0 <= r[f"{k}_thread_us"] <= 1.5 * us + 50
        assert r["float_path"] == r["raw_path"] == "memory"  # 300 small records
        assert r["stream_float_path"] == r["stream_raw_path"] == "stream"
        # held by default: no stream's first pass is measured
        assert r["stream_raw_first_img_s"] is None and r["stream_raw_first_ratio"] is None
    # a memory budget below the 32 px level's share (300 x 1 KiB): that level streams
    rows = bench.bench_reader(small_set, 16, 0.05, 1, "mn", memory=300 * 32 * 32 - 1)
    assert [r["float_path"] for r in rows] == ["memory", "memory", "memory", "stream"]
    assert rows[2]["raw_mirror_path"] == "memory" and rows[3]["raw_mirror_path"] == "stream"
    assert (f"| mn | r05 | 32 | 1 | {rows[3]['bare_img_s']} | {rows[3]['bare_cores']} | "
            f"{rows[3]['bare_thread_us']} |") in bench.markdown([], rows, {"machine": "m", "load_before": 0,
                                                               "load_after": 0, "tf": "x",
                                                               "batch": 16})


def test_repeated_set_streams_like_a_large_one(small_set, tmp_path):
    from alae_tf import data
    from tfrecords_tools import format as fmt

    prefix = bench.repeat_dataset(small_set, str(tmp_path / "large"), 3, 4)
    src, info = fmt.describe(small_set), fmt.describe(prefix)  # sizes checked against the manifest
    assert (info.levels, info.count, info.records[4]) == ([2, 3, 4], 900, [3 * n for n in src.records[4]])
    assert info.manifest["repeated"]["copies"] == 3
    records = [rec for _, rec in fmt.iter_records(src.files[4][1])]
    assert [rec for _, rec in fmt.iter_records(info.files[4][1])] == records * 3
    # 900 records of 16 x 16: held under a budget of 900 x 256 bytes, streamed under one less
    assert data.holds_in_memory(900, 256, 16, 900 * 256)
    rows = bench.bench_reader(prefix, 16, 0.05, 1, "x3", memory=900 * 256 - 1, levels=[4])
    assert [(r["level"], r["float_path"], r["raw_path"]) for r in rows] == [(4, "stream", "stream")]
    # rounds of a millisecond end inside a fresh stream's first pass of 900 records
    (r,) = bench.bench_reader(prefix, 16, 0.001, 1, "x3", memory=900 * 256 - 1, levels=[4])
    assert r["stream_raw_first_img_s"] > 0
    assert r["stream_raw_first_ratio"] == pytest.approx(
        r["stream_raw_first_img_s"] / r["bare_img_s"], rel=0.01)
    meta = {"machine": "m", "load_before": 0, "load_after": 0, "tf": "x", "batch": 16}
    line = [t for t in bench.markdown([], [r], meta).splitlines() if t.startswith("| x3 |")][0]
    assert line.endswith(f" | {r['stream_raw_first_img_s']} | "
                         f"{r['stream_raw_first_ratio']:.2f} |")
    r["stream_raw_first_img_s"] = r["stream_raw_first_ratio"] = None
    assert bench.markdown([], [r], meta).splitlines()[-1].endswith(" | - | - |")


def test_large_set_rows_and_cleanup(small_set, tmp_path, capsys):
    import argparse

    conv = {"source": "mn", "images": 300, "dir": os.path.dirname(small_set)}
    args = argparse.Namespace(stream_images=1100, batch=16, memory_mb=1, seconds=0.05, rounds=1)
    # 4 x 300 records: only the 32 px level (1.2 MB) is over a 1 MiB budget
    rows = bench.bench_large(conv, str(tmp_path), args)
    assert [(r["dataset"], r["level"], r["float_path"]) for r in rows] == [("mn x4", 5, "stream")]
    assert not os.path.exists(tmp_path / "large")
    args.memory_mb = 2
    assert bench.bench_large(conv, str(tmp_path), args) == []
    assert "no level of 1200 images streams under a 2 MiB budget" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "large")
