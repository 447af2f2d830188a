"""A local web page for editing real images with a trained model.

    python -m alae_tf.serve --run_dir=RUN | --saved_model=DIR [--checkpoint=PATH]
        [--directions=FOLDER] [--data_dir=DATA] [--host=127.0.0.1] [--port=8000]
        [--max_upload_mb=10]

The page (alae_tf/static/editor.html, plain JavaScript, nothing from the internet) uploads or
picks an image, shows it as the model sees it and its reconstruction, moves its code w along the
attribute directions (alae_tf.directions) with sliders, mixes its styles with a second image and
downloads the result. The model is loaded once, in this process; its calls are serialized. The
server keeps no state (the page holds the codes) and writes no file: results are PNG data URLs
made in memory. Bad uploads get HTTP 4xx with {"error": one line}. See docs/editing.md.
"""
from __future__ import annotations

import base64
import io
import math
import os
import socket
import sys
import threading
from importlib import resources

import numpy as np
from PIL import Image

from alae_tf.directions import DIRECTORY, Direction
from alae_tf.directions import load as load_directions
from alae_tf.figures import crossovers
from alae_tf.images import to_float, to_uint8
from alae_tf.inference import SAVED_MODEL_FILE, Dataset, Model, first_line, open_model, recorded_data_dir

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")  # the decoders an upload may reach
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"}
COLOUR_MODES = {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
MAX_PIXELS = 40_000_000  # decoded size limit of an upload (a small PNG can hold a huge image)
MAX_STEP = 10.0  # |t| of a slider, in units of the direction's scale
SLIDER_RANGE = 4.0  # the page's sliders span [-4, 4], as the traversal figures (docs/editing.md)


class UploadError(ValueError):
    """An upload the model cannot take; the message is shown on the page."""


# ----------------------------------------------------------------------------------------------
# Images in and out
# ----------------------------------------------------------------------------------------------

def _coloured(rgb: np.ndarray) -> bool:
    """Whether more than 1 % of the pixels differ by more than 16 levels between channels."""
    spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)
    return float(np.mean(spread > 16)) > 0.01


def read_upload(data: bytes, resolution: int, channels: int,
                max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The (resolution, resolution, channels) uint8 pixels of an uploaded file, converted as
    tfrecords_tools.convert converts a folder's images: centre square, Lanczos resize, alpha on
    black, greyscale repeated for colour models. A colour image for a greyscale model is refused
    (the model could not show its colours). Raises UploadError."""
    from tfrecords_tools.sources import ImageError, ImageSpec, load_image

    if not data:
        raise UploadError("the upload is empty: choose an image file")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except Image.DecompressionBombError:
        raise UploadError(f"too large: the image has over {max_pixels:,} pixels") from None
    except (OSError, ValueError, SyntaxError):
        raise UploadError(f"not an image: the file is none of {', '.join(FORMATS)}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise UploadError(f"too large: {w}x{h} pixels is over the limit of {max_pixels:,} pixels")
    if img.mode not in GREY_MODES | COLOUR_MODES:
        raise UploadError(f"unsupported pixel format: {img.format} mode {img.mode}; upload 8-bit "
                          f"greyscale or colour (RGB, RGBA) pixels")

    def load(c: int) -> np.ndarray:
        try:
            return load_image(io.BytesIO(data), "the upload", ImageSpec(resolution, c, allow_upscale=True))
        except ImageError as e:
            raise UploadError(first_line(e)) from None

    if channels == 1 and img.mode not in GREY_MODES and _coloured(load(3)):
        raise UploadError(f"wrong channels: the model takes greyscale images (1 channel) and this "
                          f"is a colour image ({img.mode}); convert it to greyscale first")
    return load(channels)


def png_data_url(image: np.ndarray) -> str:
    """An HWC uint8 image as a data:image/png URL."""
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------------------------
# The editor: the model, its directions and the pickable images
# ----------------------------------------------------------------------------------------------

class Editor:
    """The operations of the page over one model; its calls are serialized by a lock (one
    batch of one image at a time keeps memory bounded)."""

    def __init__(self, model: Model, directions: dict[str, Direction],
                 dataset: np.ndarray | None = None, source: str = ""):
        if not model.has_encoder:
            raise ValueError(f"the web page edits real images: the {model.name} model has no encoder")
        self.model, self.directions, self.dataset, self.source = model, directions, dataset, source
        self.lock = threading.Lock()
        self.mixing = model.has_styles and model.num_styles > 1
        self.crossovers = {n: (a, b) for n, a, b in crossovers(model.num_styles)} if self.mixing else {}

    def info(self) -> dict:
        m = self.model
        return {"model": m.name, "kind": m.kind, "step": m.step, "source": self.source,
                "resolution": m.resolution, "channels": m.channels, "latent_size": m.latent_size,
                "num_styles": m.num_styles, "slider_range": SLIDER_RANGE,
                "directions": [{"name": d.name, "accuracy": d.accuracy, "scale": d.scale}
                               for d in self.directions.values()],
                "crossovers": [{"name": n, "start": a, "end": b} for n, (a, b) in self.crossovers.items()],
                "mixing": self.mixing or f"style mixing needs the style model: the {m.name} model "
                                         f"has a single style",
                "dataset": 0 if self.dataset is None else len(self.dataset)}

    def encode(self, pixels: np.ndarray) -> dict:
        """{w, input, reconstruction} of one HWC uint8 image."""
        with self.lock:
            w = self.model.encode(to_float(pixels[None]))
            recon = to_uint8(self.model.decode(w))[0]
        return {"w": [float(v) for v in w[0]], "input": png_data_url(pixels),
                "reconstruction": png_data_url(recon)}

    def code(self, value, what: str) -> np.ndarray:
        """A code of the page as (1, latent_size) float32; ValueError when it is not one."""
        try:
            w = np.asarray(value, np.float32).reshape(1, -1)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: not a list of numbers") from None
        if w.shape[1] != self.model.latent_size or not np.isfinite(w).all():
            raise ValueError(f"{what}: need {self.model.latent_size} finite numbers")
        return w

    def moved(self, w: np.ndarray, moves) -> np.ndarray:
        """``w`` moved ``t`` scales along each direction of ``moves`` ({name: t})."""
        if not isinstance(moves or {}, dict):
            raise ValueError("moves: need an object {direction: step}")
        for name, t in (moves or {}).items():
            if name not in self.directions:
                raise ValueError(f"unknown direction {name!r}")
            if not isinstance(t, (int, float)) or not math.isfinite(t) or abs(t) > MAX_STEP:
                raise ValueError(f"direction {name!r}: the step must be a number in "
                                 f"[-{MAX_STEP:g}, {MAX_STEP:g}]")
            w = self.directions[name].move(w, float(t))
        return w

    def edit(self, w, moves) -> np.ndarray:
        """The decoding of code ``w`` moved along the directions, HWC uint8."""
        w = self.moved(self.code(w, "w"), moves)
        with self.lock:
            return to_uint8(self.model.decode(w))[0]

    def mix(self, w_a, w_b, crossover: str, moves=None) -> np.ndarray:
        """Styles of ``w_b`` with the crossover's slots from ``w_a`` (moved along the
        directions), synthesized, HWC uint8."""
        if not self.mixing:
            raise ValueError(self.info()["mixing"])
        if crossover not in self.crossovers:
            raise ValueError(f"unknown crossover {crossover!r}: one of {', '.join(self.crossovers)}")
        a = self.moved(self.code(w_a, "w_a"), moves)
        styles = np.repeat(self.code(w_b, "w_b")[:, None], self.model.num_styles, axis=1)
        start, end = self.crossovers[crossover]
        styles[:, start:end] = a[:, None]
        with self.lock:
            return to_uint8(self.model.synthesize(styles))[0]


# ----------------------------------------------------------------------------------------------
# The web application
# ----------------------------------------------------------------------------------------------

def create_app(editor: Editor, max_upload_mb: float = 10.0, max_pixels: int = MAX_PIXELS):
    """The Flask application of the page and its JSON API (docs/editing.md)."""
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 2 ** 20)
    page = resources.files("alae_tf").joinpath("static", "editor.html").read_text(encoding="utf-8")
    model = editor.model

    @app.errorhandler(UploadError)
    @app.errorhandler(ValueError)
    def bad_request(e):
        return jsonify(error=first_line(e)), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e):
        return jsonify(error=f"too large: uploads are limited to {max_upload_mb:g} MB"), 413

    @app.errorhandler(HTTPException)
    def http_error(e):
        return jsonify(error=f"{e.code} {e.name}"), e.code

    @app.errorhandler(Exception)
    def internal(e):
        app.logger.exception("request failed")
        return jsonify(error=f"internal error: {first_line(e)}"), 500

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/api/info")
    def info():
        return jsonify(editor.info() | {"max_upload_mb": max_upload_mb})

    @app.post("/api/encode")
    def encode():
        upload = request.files.get("image")
        if upload is None:
            raise UploadError("no file: send the image as the form field 'image'")
        return jsonify(editor.encode(read_upload(upload.read(), model.resolution, model.channels,
                                                 max_pixels)))

    @app.get("/api/dataset")
    def dataset():
        images = [] if editor.dataset is None else editor.dataset
        return jsonify(images=[png_data_url(x) for x in images])

    @app.get("/api/dataset/<int:i>")
    def pick(i: int):
        count = 0 if editor.dataset is None else len(editor.dataset)
        if i >= count:
            raise ValueError(f"no dataset image {i}: the server offers {count}")
        return jsonify(editor.encode(editor.dataset[i]))

    @app.post("/api/edit")
    def edit():
        data = body()
        return jsonify(image=png_data_url(editor.edit(data.get("w"), data.get("moves"))))

    @app.post("/api/mix")
    def mix():
        data = body()
        return jsonify(image=png_data_url(editor.mix(data.get("w_a"), data.get("w_b"),
                                                     str(data.get("crossover")), data.get("moves"))))

    return app


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def _define_flags():
    from absl import flags

    flags.DEFINE_string("run_dir", None, "run directory of alae_tf.train or alae_tf.port")
    flags.DEFINE_string("saved_model", None, "SavedModel of alae_tf.export (instead of --run_dir)")
    flags.DEFINE_string("checkpoint", None, "checkpoint of the run (default: the latest)")
    flags.DEFINE_string("directions", None, "folder of direction files (default: RUN/directions)")
    flags.DEFINE_string("data_dir", None, "dataset FOLDER/NAME to pick images from (default: the "
                        "run's, when it exists)")
    flags.DEFINE_integer("dataset_images", 16, "images of the dataset offered to pick (the first N)")
    flags.DEFINE_string("host", "127.0.0.1", "address to serve on (the page has no login: keep it local)")
    flags.DEFINE_integer("port", 8000, "port to serve on (0: a free one)")
    flags.DEFINE_float("max_upload_mb", 10.0, "largest upload in MB")


def build_editor(f, log=print) -> Editor:
    """The editor of the flags: model, directions, dataset images. ValueError: a bad flag."""
    if bool(f.run_dir) == bool(f.saved_model):
        raise ValueError("pass exactly one of --run_dir=RUN and --saved_model=DIR")
    path = f.run_dir or f.saved_model
    flag = "--run_dir" if f.run_dir else "--saved_model"
    if not os.path.isdir(path):
        raise ValueError(f"{flag}={path}: no such directory")
    if f.saved_model and not os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        raise ValueError(f"--saved_model={path}: no {SAVED_MODEL_FILE} (a run directory is --run_dir)")
    if f.saved_model and f.checkpoint:
        raise ValueError("--checkpoint is for --run_dir (a SavedModel has one set of weights)")
    if f.directions and not os.path.isdir(f.directions):
        raise ValueError(f"--directions={f.directions}: no such directory")
    if f.max_upload_mb <= 0 or f.dataset_images < 0:
        raise ValueError("--max_upload_mb must be > 0 and --dataset_images >= 0")
    model = open_model(path, f.checkpoint)
    folder = f.directions or (os.path.join(f.run_dir, DIRECTORY) if f.run_dir else None)
    directions = load_directions(folder, model.latent_size) if folder and os.path.isdir(folder) else {}
    if not directions:
        log(f"no directions{f' in {folder}' if folder else ''}: no sliders (python -m "
            f"alae_tf.directions --run_dir=RUN writes them, or pass --directions=FOLDER)")
    data_dir = f.data_dir
    if not data_dir and f.run_dir and f.dataset_images:
        try:
            data_dir = recorded_data_dir(f.run_dir)
        except ValueError as e:
            log(f"no images to pick from ({first_line(e)})")
    pixels = None
    if data_dir and f.dataset_images:
        data = Dataset(data_dir, model.resolution, model.channels, f"--data_dir={data_dir}")
        pixels = data.pixels(min(f.dataset_images, data.count))
    return Editor(model, directions, pixels, source=path)


def main(argv):
    import tensorflow as tf
    from absl import flags
    from werkzeug.serving import make_server

    FLAGS = flags.FLAGS
    try:
        if len(argv) > 1:
            raise ValueError(f"unexpected arguments {' '.join(argv[1:])}")
        try:  # bound before the model loads: a port in use is known at once
            sock = socket.create_server((FLAGS.host, FLAGS.port))
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else first_line(e)
            raise ValueError(f"--host={FLAGS.host} --port={FLAGS.port}: {reason} (pass "
                             f"another --port, or --port=0 for a free one)") from None
        editor = build_editor(FLAGS)
    except (ValueError, OSError, tf.errors.OpError) as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
        sys.exit(1)
    app = create_app(editor, FLAGS.max_upload_mb)
    server = make_server(FLAGS.host, FLAGS.port, app, threaded=True, fd=sock.fileno())
    host = f"[{FLAGS.host}]" if ":" in FLAGS.host else FLAGS.host
    print(f"serving http://{host}:{server.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sock.close()


def run():
    from tfrecords_tools import cli

    _define_flags()
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
