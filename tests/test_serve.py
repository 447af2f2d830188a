"""The local web page (alae_tf.serve): its API through Flask's test client, and the page in a
real headless Chromium (Debian's, driven by Playwright) against the real server process."""
import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from test_export import _env, cli, digits, runs  # noqa: F401  (session fixtures)

CHROMIUM = "/usr/bin/chromium"
# Headless Chromium in this closed network: no background connections, a fresh profile
# (Playwright gives each launch its own temporary profile).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _png(array) -> bytes:
    """PNG bytes of an array: HW uint8 L, HW uint16 I;16, HWC uint8 LA / RGB / RGBA."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _pixels(data_url: str) -> np.ndarray:
    head, payload = data_url.split(",", 1)
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
        return np.asarray(im)


def _direction(name: str, latent_size: int, seed: int, scale: float = 2.0):
    from alae_tf.directions import Direction

    v = np.random.RandomState(seed).standard_normal(latent_size).astype(np.float32)
    return Direction(name=name, vector=v / np.linalg.norm(v), scale=scale, accuracy=0.75, count=100,
                     test_count=20, positives=50, source="test")


@pytest.fixture(scope="module")
def style(runs, digits):
    """The tiny style run (16x16 greyscale, 6 style slots) behind the app, two directions, and
    the first 4 digits of its dataset to pick."""
    from alae_tf.data import take_images
    from alae_tf.inference import open_model
    from alae_tf.serve import Editor

    model = open_model(runs["style"])
    dirs = {d.name: d for d in (_direction("thick", model.latent_size, 0),
                                _direction("slant", model.latent_size, 1))}
    return Editor(model, dirs, take_images(digits, 16, 4), source=runs["style"])


@pytest.fixture
def client(style):
    from alae_tf.serve import create_app

    return create_app(style, max_upload_mb=1.0, max_pixels=500 * 500).test_client()


def _upload(client, data: bytes, name="x.png"):
    return client.post("/api/encode", data={"image": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def test_bad_uploads_get_one_clear_line(client, monkeypatch):
    rng = np.random.RandomState(0)
    colour = rng.randint(0, 256, (20, 20, 3), np.uint8)
    cases = [
        (b"hello, not an image", 400, "not an image"),
        (b"", 400, "the upload is empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 400, "not an image"),  # a broken PNG
        (os.urandom(2 ** 20 + 10), 413, "too large: uploads are limited to 1 MB"),
        (_png(np.zeros((600, 600), np.uint8)), 400, "too large: 600x600 pixels is over the limit"),
        (_png(colour), 400, "wrong channels: the model takes greyscale images (1 channel)"),
        (_png(np.dstack([colour, colour[..., :1]])), 400, "wrong channels"),
    ]
    for data, code, message in cases:
        r = _upload(client, data)
        assert r.status_code == code, (message, r.get_json())
        assert r.get_json()["error"].startswith(message), r.get_json()
        assert "\n" not in r.get_json()["error"]
    r = client.post("/api/encode", data={}, content_type="multipart/form-data")
    assert r.status_code == 400 and "form field 'image'" in r.get_json()["error"]
    # A format outside the upload's decoders is refused before decoding; a pixel format the
    # model cannot take after it (TIFF only as a way to make a float image here).
    tiff = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tiff, format="TIFF")
    assert _upload(client, tiff.getvalue()).get_json()["error"].startswith("not an image")
    monkeypatch.setattr("alae_tf.serve.FORMATS", ("TIFF",))
    r = _upload(client, tiff.getvalue())
    assert (r.status_code, r.get_json()["error"]) == (400, "unsupported pixel format: TIFF mode F; "
                                                           "upload 8-bit greyscale or colour (RGB, RGBA) pixels")


def test_uploads_are_converted_like_the_converter(client, style):
    from tfrecords_tools.sources import ImageSpec, load_image

    rng = np.random.RandomState(1)
    grey = rng.randint(0, 256, (30, 40), np.uint8)
    spec = ImageSpec(16, 1, allow_upscale=True)
    # greyscale, greyscale stored as RGB, with an opaque alpha, 16-bit: all the same pixels
    for data in (_png(grey), _png(np.dstack([grey] * 3)), _png(np.dstack([grey, np.full_like(grey, 255)])),
                 _png(grey.astype(np.uint16) * 257)):
        out = _upload(client, data).get_json()
        want = load_image(io.BytesIO(_png(grey)), "x", spec)[..., 0]
        np.testing.assert_array_equal(_pixels(out["input"]), want)
        assert _pixels(out["reconstruction"]).shape == (16, 16)
        assert len(out["w"]) == style.model.latent_size


def test_edit_moves_the_code_and_no_move_is_the_reconstruction(client, style):
    from alae_tf.images import to_uint8

    out = _upload(client, _png(style.dataset[0][..., 0])).get_json()
    recon = _pixels(out["reconstruction"])
    for moves in ({}, {"thick": 0.0}, {"thick": 0, "slant": 0.0}):
        r = client.post("/api/edit", json={"w": out["w"], "moves": moves})
        np.testing.assert_array_equal(_pixels(r.get_json()["image"]), recon)
    r = client.post("/api/edit", json={"w": out["w"], "moves": {"thick": 3.0, "slant": -1.5}})
    got = _pixels(r.get_json()["image"])
    w = np.asarray([out["w"]], np.float32)
    w = style.directions["slant"].move(style.directions["thick"].move(w, 3.0), -1.5)
    np.testing.assert_array_equal(got, to_uint8(style.model.decode(w))[0, ..., 0])
    assert not np.array_equal(got, recon)


def test_bad_edit_requests_get_one_clear_line(client, style):
    w = [0.0] * style.model.latent_size
    cases = [
        ("/api/edit", {"w": w[:-1]}, f"w: need {style.model.latent_size} finite numbers"),
        ("/api/edit", {"w": ["a"] * len(w)}, "w: not a list of numbers"),
        ("/api/edit", {"w": w, "moves": {"bald": 1.0}}, "unknown direction 'bald'"),
        ("/api/edit", {"w": w, "moves": {"thick": 11}}, "direction 'thick': the step must be"),
        ("/api/edit", {"w": w, "moves": [1, 2]}, "moves: need an object"),
        ("/api/mix", {"w_a": w, "w_b": w, "crossover": "all"}, "unknown crossover 'all': one of coarse, middle"),
        ("/api/dataset/7", None, "no dataset image 7: the server offers 4"),
    ]
    for url, body, message in cases:
        r = client.post(url, json=body) if body is not None else client.get(url)
        assert r.status_code == 400 and r.get_json()["error"].startswith(message), r.get_json()
    r = client.post("/api/edit", data="w=1", content_type="text/plain")
    assert r.get_json()["error"] == "the request body must be a JSON object"
    assert client.get("/api/nothing").get_json()["error"] == "404 Not Found"


def test_mix_takes_the_crossover_slots_from_a(client, style):
    from alae_tf.images import to_uint8

    info = client.get("/api/info").get_json()
    assert info["crossovers"] == [{"name": "coarse", "start": 0, "end": 4},
                                  {"name": "middle", "start": 4, "end": 6}]
    assert [d["name"] for d in info["directions"]] == ["thick", "slant"] and info["mixing"] is True
    a, b = (client.get(f"/api/dataset/{i}").get_json() for i in (0, 1))
    wa, wb = np.float32([a["w"]]), np.float32([b["w"]])
    for name, start, end in ((c["name"], c["start"], c["end"]) for c in info["crossovers"]):
        r = client.post("/api/mix", json={"w_a": a["w"], "w_b": b["w"], "crossover": name,
                                          "moves": {"thick": 1.0}})
        styles = np.repeat(wb[:, None], 6, axis=1)
        styles[:, start:end] = style.directions["thick"].move(wa, 1.0)[:, None]
        np.testing.assert_array_equal(_pixels(r.get_json()["image"]),
                                      to_uint8(style.model.synthesize(styles))[0, ..., 0])
    # B mixed with itself is B's reconstruction
    r = client.post("/api/mix", json={"w_a": b["w"], "w_b": b["w"], "crossover": "coarse"})
    np.testing.assert_array_equal(_pixels(r.get_json()["image"]), _pixels(b["reconstruction"]))
    assert len(client.get("/api/dataset").get_json()["images"]) == 4


def test_a_single_style_model_says_mixing_is_unavailable(runs):
    from alae_tf.inference import open_model
    from alae_tf.serve import Editor, create_app

    client = create_app(Editor(open_model(runs["mlp"]), {})).test_client()
    info = client.get("/api/info").get_json()
    message = "style mixing needs the style model: the alae_mlp model has a single style"
    assert (info["mixing"], info["crossovers"], info["directions"], info["dataset"]) == (message, [], [], 0)
    w = [0.0] * info["latent_size"]
    r = client.post("/api/mix", json={"w_a": w, "w_b": w, "crossover": "coarse"})
    assert (r.status_code, r.get_json()["error"]) == (400, message)


def test_command_line_mistakes_are_one_line(runs, tmp_path):
    from alae_tf.serve import build_editor

    base = dict(run_dir=None, saved_model=None, checkpoint=None, directions=None, data_dir=None,
                dataset_images=16, max_upload_mb=10.0)
    cases = [
        ({}, "pass exactly one of --run_dir=RUN and --saved_model=DIR"),
        ({"run_dir": str(tmp_path / "nope")}, "--run_dir="),
        ({"saved_model": runs["style"]}, "no saved_model.pb (a run directory is --run_dir)"),
        ({"run_dir": runs["style"], "directions": str(tmp_path / "nope")}, "--directions="),
        ({"run_dir": str(tmp_path)}, "is not a run directory"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError) as e:
            build_editor(SimpleNamespace(**{**base, **kw}), log=lambda *_: None)
        assert message in str(e.value) and "\n" not in str(e.value)
    with socket.socket() as busy:  # a port in use: refused before the model loads
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("alae_tf.serve", f"--run_dir={runs['style']}", f"--port={port}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --host=127.0.0.1 --port={port}: Address already in use (pass another --port, "
        f"or --port=0 for a free one)")
    assert "serving" not in result.stdout


# ----------------------------------------------------------------------------------------------
# The page in a browser
# ----------------------------------------------------------------------------------------------

def _files(root) -> dict:
    return {os.path.relpath(os.path.join(d, f), root): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, fs in os.walk(root) for f in fs}


def _start_server(run_dir: str, cwd: str, log: str) -> tuple[subprocess.Popen, str]:
    """The server process on a free port, and the address it printed; its stderr (request log)
    goes to ``log``."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "alae_tf.serve", f"--run_dir={run_dir}",
                                 "--port=0", "--dataset_images=4"], cwd=cwd, env=_env(),
                                stdout=subprocess.PIPE, stderr=err, text=True)
    lines = []
    deadline = time.time() + 180
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("serving http://"):
            return proc, line.split()[1]
    proc.kill()
    raise AssertionError(f"the server did not start: {''.join(lines)} {open(log).read()[-2000:]}")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no {CHROMIUM} (.ci/run installs Debian's chromium)")
def test_the_page_in_a_browser(runs, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright (pip install -e '.[dev]')")
    from alae_tf.directions import save

    run = str(tmp_path / "run")
    shutil.copytree(runs["style"], run, ignore=shutil.ignore_patterns("exported", "export", "directions"))
    save(os.path.join(run, "directions"), [_direction("thick", 8, 0, scale=3.0)])
    cwd, downloads = tmp_path / "cwd", tmp_path / "downloads"
    cwd.mkdir()
    downloads.mkdir()
    rng = np.random.RandomState(0)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(_png(rng.randint(0, 256, (28, 28), np.uint8)))
    b.write_bytes(_png(np.kron(rng.randint(0, 256, (4, 4), np.uint8), np.ones((8, 8), np.uint8))))
    before = (_files(run), _files(cwd))
    proc, url = _start_server(run, str(cwd), str(tmp_path / "server.log"))
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(accept_downloads=True)
            page.set_default_timeout(30_000)
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            assert "alae_style" in page.inner_text("#model")
            assert page.locator("#thumbs img").count() == 4
            assert "thick (accuracy 75 %)" in page.inner_text("#sliders")

            # upload: the input as the model sees it, its reconstruction, the result
            page.set_input_files("#upload-a", str(a))
            page.wait_for_selector("#result[data-renders='1']")
            assert page.get_attribute("#recon-a", "src").startswith("data:image/png;base64,")
            recon = page.get_attribute("#recon-a", "src")
            assert page.get_attribute("#result", "src") == recon  # no move: the reconstruction

            # a slider, moved with the keyboard as a person would: the result changes
            page.focus("#slider-0")
            page.keyboard.press("End")
            page.wait_for_function("document.querySelector('#result').src !== %r" % recon)
            page.wait_for_function("!document.querySelector('#status').textContent")
            assert page.inner_text("#slider-0 + output") == "4.0"
            edited = page.get_attribute("#result", "src")

            # a second image, mixed: the coarse styles from A (edited), the rest from B
            page.set_input_files("#upload-b", str(b))
            page.wait_for_function("document.querySelector('#recon-b').src.startsWith('data:')")
            page.select_option("#crossover", "coarse")
            page.wait_for_function("document.querySelector('#result-caption').textContent.includes('mixed')")
            page.wait_for_function("document.querySelector('#result').src !== %r" % edited)
            mixed = page.get_attribute("#result", "src")

            # download: the result's PNG at the model's resolution (the page shows it enlarged)
            with page.expect_download() as info:
                page.click("#download")
            path = downloads / info.value.suggested_filename
            info.value.save_as(path)
            assert info.value.suggested_filename == "alae_edit.png"
            with Image.open(path) as im:
                assert (im.format, im.size, im.mode) == ("PNG", (16, 16), "L")
                np.testing.assert_array_equal(np.asarray(im), _pixels(mixed))
            assert page.evaluate("document.querySelector('#result').naturalWidth") == 16
            assert page.evaluate("document.querySelector('#result').clientWidth") == 192  # enlarged 12x

            # a bad upload: the server's one line on the page, the result kept
            page.set_input_files("#upload-a", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                      "buffer": b"not an image at all"}])
            page.wait_for_selector("#error:not([hidden])")
            assert page.inner_text("#error") == "not an image: the file is none of PNG, JPEG, WEBP, BMP, GIF"
            assert page.get_attribute("#result", "src") == mixed
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (_files(run), _files(cwd)) == before  # the server wrote nothing
