"""python -m tfrecords_tools.convert as a user runs it (subprocesses)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfrecords_tools import format as fmt
from tests.helpers_data import REPO, error_line, run_cli, smooth_images, write_png_tree


def test_quickstart_mnist5k_with_test_split(tmp_path):
    out = tmp_path / "mnist5k"
    p = run_cli("tfrecords_tools.convert", "--source", "mnist5k", "--output_dir", out,
                "--name", "mnist5k", "--test_count", "100", "--max_images", "600",
                "--workers", "2")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "wrote mnist5k_test: 100 images" in p.stdout
    assert "wrote mnist5k: 500 images, levels r02..r05 (4x4..32x32)" in p.stdout
    assert "\nconversion: 600 images in " in p.stdout and "2 worker(s)" in p.stdout
    m = json.loads((out / "mnist5k.manifest.json").read_text())
    assert m["conversion"]["workers"] == 2 and m["labels"] and m["split"] == "train"
    assert m["companions"] == ["mnist5k_test"]
    info = fmt.describe(str(out))
    assert info.name == "mnist5k" and info.count == 500
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # temp folder gone


def test_errors_are_one_line_with_status_1(tmp_path):
    cases = [
        (["--source", "mnist5k", "--output_dir", tmp_path, "--resolution", "24"],
         "error: --resolution: resolution 24 is not a power of two >= 4"),
        (["--output_dir", tmp_path], "error: --source is required"),
        (["--source", "images", "--input", tmp_path / "missing", "--output_dir", tmp_path,
          "--resolution", "8"], "error: --input " + str(tmp_path / "missing")),
        (["--source", "mnist5k", "--output_dir", tmp_path, "--stylegan_layout", "--parts", "4"],
         "error: --stylegan_layout writes one file per level"),
        (["--source", "mnist5k", "--output_dir", tmp_path, "--test_count", "3",
          "--test_fraction", "0.1"], "error: pass --test_count or --test_fraction, not both"),
    ]
    for args, expect in cases:
        p = run_cli("tfrecords_tools.convert", *args)
        assert p.returncode == 1, (args, p.stderr[-2000:])
        assert error_line(p).startswith(expect), (error_line(p), expect)
        assert "Traceback" not in p.stderr


def test_bad_image_and_existing_output(tmp_path):
    src = tmp_path / "in"
    write_png_tree(str(src), smooth_images(6, 16, 3), classes=list("aabbcc"))
    (src / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "out"
    args = ["--source", "images", "--input", src, "--output_dir", out, "--resolution", "8",
            "--labels", "--stylegan_layout", "--workers", "2"]
    p = run_cli("tfrecords_tools.convert", *args)
    assert p.returncode == 1
    line = error_line(p)
    assert "broken.jpg: unreadable or corrupt image" in line and "--skip_bad" in line
    assert fmt.find_datasets(str(out)) == []
    p = run_cli("tfrecords_tools.convert", *args, "--skip_bad")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "1 skipped" in p.stdout and "broken.jpg" in p.stdout
    info = fmt.describe(str(out))
    assert info.layout == "stylegan" and info.count == 6 and info.has_labels
    assert info.manifest["skipped"]["count"] == 1
    p = run_cli("tfrecords_tools.convert", *args, "--skip_bad")
    assert p.returncode == 1 and "already exists" in error_line(p)
    assert "--overwrite" in error_line(p)


def test_killed_conversion_leaves_no_dataset(tmp_path):
    src = tmp_path / "in"
    write_png_tree(str(src), smooth_images(40, 64, 3))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "tfrecords_tools.convert", "--source",
                             "images", "--input", str(src), "--output_dir", str(out),
                             "--name", "k", "--resolution", "64", "--workers", "1"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and any(
            f.startswith(".k.tmp-") for f in os.listdir(out))):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert fmt.find_datasets(str(out)) == []  # only the hidden temporary folder
    p = run_cli("tfrecords_tools.convert", "--source", "images", "--input", src,
                "--output_dir", out, "--name", "k", "--resolution", "16", "--workers", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(os.listdir(out))[0] == "k-r02.tfrecords.000"  # stale temp folder removed
    assert np.isclose(fmt.describe(str(out)).count, 40)


def test_lone_bad_image_is_a_one_line_error(tmp_path):
    # one image: one chunk, decoded in the main process before any worker pool exists
    src = tmp_path / "in"
    src.mkdir()
    (src / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    p = run_cli("tfrecords_tools.convert", "--source", "images", "--input", src,
                "--output_dir", tmp_path / "out", "--resolution", "8")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert error_line(p).startswith(f"error: {src / 'cut.png'}: unreadable or corrupt image")


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        return [int(c) for c in f.read().split()]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start_and_wait_for_workers(src, out, workers):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "tfrecords_tools.convert", "--source",
                             "images", "--input", str(src), "--output_dir", str(out),
                             "--name", "k", "--resolution", "64", "--workers", str(workers)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        tmp = [f for f in os.listdir(out) if f.startswith(".k.tmp-")] if out.exists() else []
        if tmp and os.listdir(out / tmp[0]) and len(_children(proc.pid)) >= workers - 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the conversion ended before it could be stopped"
    return proc


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_sigterm_cleans_up_and_killed_parent_takes_its_workers(tmp_path):
    src = tmp_path / "in"
    write_png_tree(str(src), smooth_images(400, 64, 3))
    out = tmp_path / "out"
    proc = _start_and_wait_for_workers(src, out, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "error: interrupted; nothing was written" in err, err[-2000:]
    assert os.listdir(out) == []
    proc = _start_and_wait_for_workers(src, out, 2)
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)  # not communicate(): a stuck worker would hold the pipes open
    deadline = time.time() + 20
    while time.time() < deadline and any(_running(k) for k in kids):
        time.sleep(0.1)
    assert not any(_running(k) for k in kids), "a worker outlived its killed parent"
