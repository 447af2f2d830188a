"""python -m alae_tf.bench --mode=convert: the converter's figures, printed as one JSON line."""
import json
import os

from tests.helpers_data import run_cli


def test_convert_mode_prints_the_converters_figures():
    p = run_cli("alae_tf.bench", "--mode=convert", "--images=12", "--size=16")
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["mode"] == "convert" and result["size"] == 16
    assert [r["workers"] for r in result["runs"]] == sorted({1, os.cpu_count() or 1})
    for r in result["runs"]:
        assert r["images"] == 12 and r["images_per_second"] > 0
        assert r["peak_rss_mib"]["main"] > 0
