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
    # a memory budget below the 32 px level's share (300 x 1 KiB): that level streams
    rows = bench.bench_reader(small_set, 16, 0.05, 1, "mn", memory=300 * 32 * 32 - 1)
    assert [r["float_path"] for r in rows] == ["memory", "memory", "memory", "stream"]
    assert rows[2]["raw_mirror_path"] == "memory" and rows[3]["raw_mirror_path"] == "stream"
    assert (f"| mn | r05 | 32 | 1 | {rows[3]['bare_img_s']} | {rows[3]['bare_cores']} | "
            f"{rows[3]['bare_thread_us']} |") in bench.markdown([], rows, {"machine": "m", "load_before": 0,
                                                               "load_after": 0, "tf": "x",
                                                               "batch": 16})
