"""tfrecords_tools.inspect_records: our datasets, StyleGAN and release fixtures, and broken ones."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfrecords_tools import format as fmt
from tfrecords_tools import inspect_records as tinspect
from tfrecords_tools.writer import convert
from tests.helpers_data import error_line, run_cli, smooth_images, write_fixture


def run_main(capsys, *args):
    values = flags.FlagValues()  # the command's own flags, parsed as absl parses them
    tinspect._define_flags(values)
    rc = tinspect.main(values(["inspect", *map(str, args)]), values)
    out, err = capsys.readouterr()
    return rc, out, err


def test_our_dataset(tmp_path, capsys):
    convert(source="mnist5k", output_dir=str(tmp_path), name="mn", max_images=40, parts=2,
            test_count=8, workers=1)
    rc, out, err = run_main(capsys, tmp_path)
    assert rc == 0, err
    assert "dataset " + str(tmp_path / "mn") in out and "mn_test" in out
    assert "manifest: tfrecords_tools" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith("r0")]
    assert ["r05", "32x32", "2", "32", "1", "yes"] == rows[3][:6]
    assert "every level holds 32 records" in out and "box filter:" in out
    assert "all 128 records read" in out and out.count("result: OK") == 2


def test_stylegan_and_release_fixtures(tmp_path, capsys):
    imgs = smooth_images(5, 32, 3, seed=7)
    write_fixture(str(tmp_path / "sg"), "ffhq", imgs, parts=None)
    rc, out, _ = run_main(capsys, tmp_path / "sg" / "ffhq-r05.tfrecords")
    assert rc == 0 and "(no manifest)" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith("r0")]
    assert [r[:6] for r in rows] == [[f"r{r:02d}", f"{2 ** r}x{2 ** r}", "1", "5", "3", "no"]
                                     for r in range(2, 6)]
    write_fixture(str(tmp_path / "rel"), "celeba", imgs[:, :16, :16], labels=[1, 2, 3, 4, 5],
                  parts=3)
    rc, out, _ = run_main(capsys, str(tmp_path / "rel" / "celeba-r*.tfrecords.*"))
    assert rc == 0
    assert "r04   16x16" in out and " yes " in out
    rc, out, _ = run_main(capsys, "--json", tmp_path / "rel")
    rep = json.loads(out)[0]
    assert rep["levels"][-1]["parts"] == 3 and rep["problems"] == []


def _dataset(tmp_path, n=6, parts=2):
    imgs = smooth_images(n, 16, 1, seed=1)
    write_fixture(str(tmp_path), "d", imgs, labels=list(range(n)), parts=parts)
    return str(tmp_path)


def test_truncated_file(tmp_path, capsys):
    d = _dataset(tmp_path)
    f = os.path.join(d, "d-r03.tfrecords.001")
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) - 10)
    rc, out, err = run_main(capsys, d)
    assert rc == 1 and "FAIL" in out
    assert "error: " + f + ": record 2: truncated" in err


def test_crc_corruption_names_record(tmp_path, capsys):
    d = _dataset(tmp_path)
    f = os.path.join(d, "d-r04.tfrecords.000")
    frames = fmt.scan_records(f)
    with open(f, "r+b") as fh:
        fh.seek(frames[1][0] + 60)
        b = fh.read(1)
        fh.seek(frames[1][0] + 60)
        fh.write(bytes([b[0] ^ 1]))
    rc, out, err = run_main(capsys, d)
    assert rc == 1
    assert f"error: {f}: record 1: corrupt data (CRC mismatch)" in err
    rc, out, err = run_main(capsys, "--quick", d)  # --quick does not read the data
    assert "all " not in out


def test_wrong_shape_record(tmp_path, capsys):
    d = _dataset(tmp_path)
    f = os.path.join(d, "d-r02.tfrecords.001")
    recs = [r for _, r in fmt.iter_records(f)]
    recs[2] = fmt.encode_example(np.zeros((1, 4, 5), np.uint8), 5)
    with tf.io.TFRecordWriter(f) as w:
        for r in recs:
            w.write(r)
    rc, out, err = run_main(capsys, d, "--samples", "0")
    assert rc == 1 and f"{f}: record 2: shape [1, 4, 5] where this level needs [1, 4, 4]" in err


def test_box_filter_violation_and_count_mismatch(tmp_path, capsys):
    d = _dataset(tmp_path / "a")
    other = smooth_images(6, 16, 1, seed=99)
    write_fixture(str(tmp_path / "b"), "d", other, labels=list(range(6)), parts=2)
    shutil.copy(tmp_path / "b" / "d-r03.tfrecords.000", os.path.join(d, "d-r03.tfrecords.000"))
    rc, out, err = run_main(capsys, d, "--samples", "6")
    assert rc == 1 and "is not the 2x2 box filter of" in err and "d-r03.tfrecords.000" in err
    write_fixture(str(tmp_path / "c"), "d", other[:5], labels=list(range(5)), parts=2)
    shutil.copy(tmp_path / "c" / "d-r02.tfrecords.001", os.path.join(d, "d-r02.tfrecords.001"))
    rc, out, err = run_main(capsys, d)
    f = os.path.join(d, "d-r02.tfrecords.001")
    assert rc == 1 and (f"error: {f}: 2 records, where part 001 of the other levels holds 3 "
                        f"(levels hold different record counts: r02=5, r03=6, r04=6)") in err


def _cut_last_record(path):
    """Truncate `path` at the start of its last record: a valid, one record shorter file."""
    frames = fmt.scan_records(path)
    os.truncate(path, frames[-1][0] - 12)
    assert len(fmt.scan_records(path)) == len(frames) - 1


def test_short_file_cut_at_record_boundary_is_named(tmp_path, capsys):
    convert(source="mnist5k", output_dir=str(tmp_path / "a"), name="a", max_images=40, parts=2,
            workers=1)
    d = str(tmp_path / "a")
    os.remove(fmt.manifest_path(d, "a"))
    short = os.path.join(d, "a-r05.tfrecords.001")
    _cut_last_record(short)
    want = (f"{short}: 19 records, where part 001 of the other levels holds 20 (levels hold "
            f"different record counts: r02=40, r03=40, r04=40, r05=39)")
    rc, out, err = run_main(capsys, d, "--quick")
    assert rc == 1 and f"FAIL  {want}" in out and f"error: {want}" in err
    with pytest.raises(fmt.DatasetError) as e:  # the reader's describe() says the same
        fmt.describe(d)
    assert str(e.value) == want
    _cut_last_record(os.path.join(d, "a-r03.tfrecords.000"))  # two odd files: no single culprit
    rc, out, err = run_main(capsys, d, "--quick")
    assert rc == 1 and "error: " + os.path.join(d, "a") + (
        ": levels hold different record counts (r02=40, r03=39, r04=40, r05=39)") in err
    sg = str(tmp_path / "sg")  # StyleGAN layout: one file per level
    write_fixture(sg, "s", smooth_images(5, 16, 1, seed=3), parts=None)
    _cut_last_record(os.path.join(sg, "s-r03.tfrecords"))
    rc, out, err = run_main(capsys, sg, "--quick")
    f = os.path.join(sg, "s-r03.tfrecords")
    assert rc == 1 and (f"error: {f}: 4 records, where the other levels hold 5 "
                        f"(levels hold different record counts: r02=5, r03=4, r04=5)") in err


def test_partial_levels_pass_and_nothing_found(tmp_path, capsys):
    """A dataset holding only some levels (the release's held-out sets: the top one) passes;
    the box filter is checked between the adjacent levels present."""
    d = _dataset(tmp_path)
    for p in range(2):
        os.remove(os.path.join(d, f"d-r03.tfrecords.{p:03d}"))
    rc, out, err = run_main(capsys, d)
    assert rc == 0, err
    assert "levels r02, r04 present (r03 absent: read at the levels it has)" in out
    assert "all 12 records read" in out and "box filter" not in out
    for p in range(2):
        os.remove(os.path.join(d, f"d-r02.tfrecords.{p:03d}"))
    rc, out, err = run_main(capsys, d)
    assert rc == 0 and "levels r04 present (r02, r03 absent" in out
    rc, out, err = run_main(capsys, tmp_path / "nothing-here")
    assert rc == 1 and err.startswith("error: ") and "no dataset found" in err


def test_cli(tmp_path):
    d = _dataset(tmp_path)
    p = run_cli("tfrecords_tools.inspect_records", d)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "result: OK" in p.stdout
    os.remove(os.path.join(d, "d-r04.tfrecords.001"))
    p = run_cli("tfrecords_tools.inspect_records", d)
    assert p.returncode == 1 and "FAIL" in p.stdout
    assert error_line(p).startswith("error: ")


@pytest.mark.parametrize("edit, message", [
    ({"channels": 3}, r"record 0: shape \[1, 32, 32\] where this level needs \[3, 32, 32\]|"
                      r"channels 3 but the records hold 1"),
    ({"labels": False}, r"labels False but the records have a 'label'|"
                        r"record 0 has a 'label' but .* says labels False"),
    ({"count": 61}, r"count 61 but the files hold 60 records per level"),
    ({"resolution": 64}, r"resolution 64 but the top level is 32 px"),
    ({"levels": [2, 3, 4, 5, 6]}, r"levels r02, r03, r04, r05, r06 but the files hold r02, "
                                  r"r03, r04, r05|manifest lists no files for level r06"),
])
def test_manifest_that_contradicts_the_records(tmp_path, capsys, edit, message):
    convert(source="mnist5k", output_dir=str(tmp_path), name="m", max_images=60, workers=1)
    mpath = fmt.manifest_path(str(tmp_path), "m")
    m = json.loads(open(mpath).read())
    m.update(edit)
    with open(mpath, "w") as f:
        json.dump(m, f)
    rc, out, err = run_main(capsys, tmp_path, "--quick")
    assert rc == 1 and "FAIL" in out and "result: OK" not in out, out
    assert re.search(message, out + err), out + err
    with pytest.raises(fmt.DatasetError, match=message):
        fmt.describe(str(tmp_path))


def test_manifest_listing_another_file_and_a_missing_part(tmp_path, capsys):
    convert(source="mnist5k", output_dir=str(tmp_path), name="m", max_images=40, workers=1)
    mpath = fmt.manifest_path(str(tmp_path), "m")
    m = json.loads(open(mpath).read())
    m["files"]["3"][1]["file"] = "m-r03.tfrecords.009"
    with open(mpath, "w") as f:
        json.dump(m, f)
    rc, out, _ = run_main(capsys, tmp_path, "--quick")
    assert rc == 1
    assert "m-r03.tfrecords.001: not listed in" in out
    assert "m-r03.tfrecords.009: listed in the manifest, missing" in out
    os.remove(tmp_path / "m.manifest.json")
    os.remove(tmp_path / "m-r04.tfrecords.001")
    rc, out, _ = run_main(capsys, tmp_path, "--quick")
    assert rc == 1 and "level r04 misses part(s) 001" in out
    assert "box filter" not in out  # records of r04 no longer line up with r05's
