"""The multi-LOD TFRecord format: the one source of truth for schema, file names and manifest.

A dataset called NAME in folder DIR is one set of files per resolution level r = log2(side),
usually from r02 (4x4) up to the top level (the ALAE release's held-out sets hold only their
top level; a reader reads the levels a dataset has):

    DIR/NAME-r02.tfrecords.000 ... DIR/NAME-rRR.tfrecords.PPP   (parts layout, ALAE release)
    DIR/NAME-r02.tfrecords     ... DIR/NAME-rRR.tfrecords       (StyleGAN dataset_tool layout)
    DIR/NAME.manifest.json                                      (optional, written last by us)

Every record is an uncompressed TFRecord holding a ``tf.train.Example`` with

    'shape': int64_list [C, H, W]
    'data' : bytes_list [raw uint8 bytes in C, H, W order]
    'label': int64_list [label]            (optional)

Level r-1 is the 2x2 box average of the unrounded float level r, rounded with ``np.rint`` and
clipped to [0, 255]; record i of every level is the same image.

This module needs no protobuf, and TensorFlow only to check data CRCs (``first_problem``,
``verify_files``): it encodes and decodes the Example wire format and the TFRecord framing
itself, so converter workers and ``describe`` stay light. Readers (``alae_tf.data``) and the
inspector (``tfrecords_tools.inspect_records``) take their names and checks from here.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import struct
from typing import Iterator

import numpy as np

FORMAT_NAME = "alae-multilod-tfrecords"
FORMAT_VERSION = 1
MIN_LEVEL = 2  # 4 x 4
MAX_LEVEL = 14  # 16384 x 16384: a sanity bound, not a limit of the format
MANIFEST_SUFFIX = ".manifest.json"
TEST_SUFFIX = "_test"  # NAME_test: the held-out set written next to NAME
KEY_SHAPE, KEY_DATA, KEY_LABEL = "shape", "data", "label"

LAYOUT_PARTS = "parts"  # NAME-rXX.tfrecords.NNN (ALAE release, our default)
LAYOUT_STYLEGAN = "stylegan"  # NAME-rXX.tfrecords  (one file per level)

_FILE_RE = re.compile(r"^(?P<name>.+)-r(?P<level>\d{2})\.tfrecords(?:\.(?P<part>\d{3,}))?$")
_GLOB_CHARS = set("*?[")


class DatasetError(ValueError):
    """A dataset, file or record is missing, inconsistent or corrupt. The message is one line
    and names the path (and the level / record index where one applies)."""


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------

def level_of_resolution(resolution: int) -> int:
    """log2 of a power-of-two side >= 4, else DatasetError."""
    r = int(resolution)
    if r < 4 or r & (r - 1):
        raise DatasetError(f"resolution {resolution} is not a power of two >= 4")
    level = r.bit_length() - 1
    if level > MAX_LEVEL:
        raise DatasetError(f"resolution {resolution} is above the supported 2**{MAX_LEVEL}")
    return level


def level_filename(name: str, level: int, part: int | None = None) -> str:
    """NAME-rXX.tfrecords (part None, StyleGAN layout) or NAME-rXX.tfrecords.NNN."""
    base = f"{name}-r{int(level):02d}.tfrecords"
    return base if part is None else f"{base}.{int(part):03d}"


def manifest_filename(name: str) -> str:
    return f"{name}{MANIFEST_SUFFIX}"


NAMES_SUFFIX = ".names.txt"


def names_path(directory: str, name: str) -> str:
    """The converter's list of image names of dataset NAME, one per record in order."""
    return os.path.join(directory, f"{name}{NAMES_SUFFIX}")


def read_names(prefix: str) -> list[str] | None:
    """The image names of the dataset at FOLDER/NAME ``prefix`` in record order (file names, or
    source[index] for arrays), or None where none were recorded (StyleGAN's and the release's
    files, or converted before names were recorded)."""
    path = prefix + NAMES_SUFFIX
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def parse_filename(filename: str):
    """(name, level, part-or-None) for a level file name, else None."""
    m = _FILE_RE.match(os.path.basename(filename))
    if not m:
        return None
    part = m.group("part")
    return m.group("name"), int(m.group("level")), (None if part is None else int(part))


# ----------------------------------------------------------------------------------------------
# Example wire format (protobuf) without protobuf
# ----------------------------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint((field << 3) | 2) + _varint(len(payload)) + payload


def _int64_feature(values) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _len_field(3, _len_field(1, packed))  # Feature.int64_list{ packed value }


def _bytes_feature(value: bytes) -> bytes:
    return _len_field(1, _len_field(1, value))  # Feature.bytes_list{ value }


def _map_entry(key: str, feature: bytes) -> bytes:
    return _len_field(1, _len_field(1, key.encode()) + _len_field(2, feature))


def encode_example(chw: np.ndarray, label: int | None = None) -> bytes:
    """Serialized tf.train.Example for one CHW uint8 image (and optional int label)."""
    chw = np.asarray(chw)
    if chw.dtype != np.uint8 or chw.ndim != 3:
        raise ValueError(f"encode_example needs a CHW uint8 array, got {chw.dtype} {chw.shape}")
    features = (_map_entry(KEY_SHAPE, _int64_feature(chw.shape))
                + _map_entry(KEY_DATA, _bytes_feature(np.ascontiguousarray(chw).tobytes())))
    if label is not None:
        features += _map_entry(KEY_LABEL, _int64_feature([int(label)]))
    return _len_field(1, features)


class _Malformed(Exception):
    pass


def _read_varint(buf, pos: int, end: int):
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Malformed("varint longer than 10 bytes")


def _iter_fields(buf, start: int, end: int):
    """(field number, wire type, value) where value is an int (varint), or (a, b) bounds
    for length-delimited and fixed fields."""
    pos = start
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _read_varint(buf, pos, end)
            yield field, wire, value
        elif wire == 2:
            n, pos = _read_varint(buf, pos, end)
            if pos + n > end:
                raise _Malformed("length-delimited field runs past its message")
            yield field, wire, (pos, pos + n)
            pos += n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > end:
                raise _Malformed("fixed field runs past its message")
            yield field, wire, (pos, pos + n)
            pos += n
        else:
            raise _Malformed(f"unsupported wire type {wire}")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


def _decode_feature(buf, start, end):
    kind, values = None, []
    for field, wire, val in _iter_fields(buf, start, end):
        if field == 1 and wire == 2:  # bytes_list
            kind = "bytes"
            values = [bytes(buf[v[0]:v[1]]) for f, w, v in _iter_fields(buf, *val)
                      if f == 1 and w == 2]
        elif field == 3 and wire == 2:  # int64_list
            kind, values = "int64", []
            for f, w, v in _iter_fields(buf, *val):
                if f != 1:
                    continue
                if w == 0:
                    values.append(_signed64(v))
                elif w == 2:
                    p, e = v
                    while p < e:
                        x, p = _read_varint(buf, p, e)
                        values.append(_signed64(x))
        elif field == 2 and wire == 2:  # float_list
            kind, values = "float", []
            for f, w, v in _iter_fields(buf, *val):
                if f != 1:
                    continue
                a, b = v
                if w == 5:
                    values.append(struct.unpack("<f", bytes(buf[a:b]))[0])
                elif w == 2:
                    if (b - a) % 4:
                        raise _Malformed("packed float list length not a multiple of 4")
                    values.extend(np.frombuffer(bytes(buf[a:b]), "<f4").tolist())
    return kind, values


def _feature_entries(buf):
    """(key bytes or None, (start, end) of the Feature or None) of each entry of the feature
    map of a serialized tf.train.Example."""
    for field, wire, val in _iter_fields(buf, 0, len(buf)):
        if field != 1 or wire != 2:
            continue
        for f, w, entry in _iter_fields(buf, *val):
            if f != 1 or w != 2:
                continue
            key = feature = None
            for ef, ew, ev in _iter_fields(buf, *entry):
                if ef == 1 and ew == 2:
                    key = bytes(buf[ev[0]:ev[1]])
                elif ef == 2 and ew == 2:
                    feature = ev
            yield key, feature


def decode_example(serialized: bytes) -> dict:
    """{key: list of values} of a serialized tf.train.Example; DatasetError if malformed."""
    buf = memoryview(serialized)
    out = {}
    try:
        for key, feature in _feature_entries(buf):
            if key is not None:
                out[key.decode("utf-8", "replace")] = _decode_feature(buf, *(feature or (0, 0)))[1]
    except _Malformed as e:
        raise DatasetError(f"malformed tf.train.Example ({e})") from None
    return out


def check_fields(fields: dict, expect_shape=None, need_label: bool = False) -> str | None:
    """A one-phrase description of what is wrong with a decoded record, or None."""
    shape = fields.get(KEY_SHAPE)
    data = fields.get(KEY_DATA)
    if shape is None or data is None:
        return f"record has no '{KEY_SHAPE}' or no '{KEY_DATA}' feature (keys: {sorted(fields)})"
    if len(shape) != 3 or any(not isinstance(s, int) or s <= 0 for s in shape):
        return f"'shape' is {list(shape)}, expected [C, H, W]"
    if len(data) != 1 or not isinstance(data[0], bytes):
        return f"'data' holds {len(data)} entries, expected one bytes value"
    n = shape[0] * shape[1] * shape[2]
    if len(data[0]) != n:
        return f"'data' has {len(data[0])} bytes but shape {list(shape)} needs {n}"
    if expect_shape is not None and list(shape) != list(expect_shape):
        return f"shape {list(shape)} where this level needs {list(expect_shape)}"
    if need_label:
        label = fields.get(KEY_LABEL)
        if not label or len(label) != 1 or not isinstance(label[0], int) or label[0] < 0:
            return f"'label' is {label!r}, expected one int64 >= 0"
    return None


def fields_to_image(fields: dict) -> tuple[np.ndarray, int | None]:
    """(CHW uint8 array, label or None) of a decoded, checked record."""
    c, h, w = fields[KEY_SHAPE]
    img = np.frombuffer(fields[KEY_DATA][0], np.uint8).reshape(c, h, w)
    label = fields.get(KEY_LABEL)
    return img, (int(label[0]) if label else None)


# ----------------------------------------------------------------------------------------------
# TFRecord framing: uint64 length, masked crc32c(length), data, masked crc32c(data)
# ----------------------------------------------------------------------------------------------

def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c_python(data: bytes) -> int:
    """Pure-Python CRC-32C (Castagnoli): the fallback without google-crc32c's C code."""
    crc = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:  # a dependency, with C wheels for every platform TensorFlow supports
    import google_crc32c
except ImportError:
    google_crc32c = None
# "c" when google-crc32c runs its C code, "python" otherwise (its own fallback, or ours)
CRC32C_IMPLEMENTATION = getattr(google_crc32c, "implementation", "python")
if CRC32C_IMPLEMENTATION == "c":
    crc32c = google_crc32c.value
else:
    crc32c = crc32c_python


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def scan_records(path: str, limit: int | None = None) -> list[tuple[int, int]]:
    """(offset of the data, length) of every record of a TFRecord file (the first `limit`
    when given), checking the framing: a truncated file or a corrupt length header raises
    DatasetError naming the file and the record index. Reads 12 bytes per record (the data
    itself is skipped, its CRC unchecked)."""
    frames = []
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            off = 0
            while off < size and (limit is None or len(frames) < limit):
                i = len(frames)
                if size - off < 12:
                    raise DatasetError(f"{path}: record {i}: truncated header at byte {off} "
                                       f"({size - off} bytes left, file truncated?)")
                f.seek(off)
                head = f.read(12)
                length_bytes = head[:8]
                (length,) = struct.unpack("<Q", length_bytes)
                (crc,) = struct.unpack("<I", head[8:12])
                if crc != masked_crc32c(length_bytes):
                    raise DatasetError(f"{path}: record {i}: corrupt length header at byte "
                                       f"{off} (CRC mismatch)")
                end = off + 12 + length + 4
                if end > size:
                    raise DatasetError(f"{path}: record {i}: truncated, needs {length} data "
                                       f"bytes at byte {off + 12} but the file ends at {size}")
                frames.append((off + 12, length))
                off = end
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    return frames


def read_record(f, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)


def iter_records(path: str, frames=None) -> Iterator[tuple[int, bytes]]:
    """(index, serialized record) of a file, framing checked (data CRCs are not)."""
    frames = scan_records(path) if frames is None else frames
    with open(path, "rb") as f:
        for i, (off, n) in enumerate(frames):
            yield i, read_record(f, off, n)


def frame_record(data: bytes) -> bytes:
    """A complete TFRecord frame (pure Python CRC: for tests and small fixtures)."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


_RECORD_RE = re.compile(r": record (\d+): ")
_OFFSET_RE = re.compile(r"record at (\d+)")


def record_problem(path: str, index: int, serialized: bytes, expect_shape=None,
                   need_label: bool = False) -> str | None:
    """"FILE: record I: what" when a record is no valid Example of `expect_shape` (with a
    label when need_label), else None."""
    try:
        problem = check_fields(decode_example(serialized), expect_shape, need_label)
    except DatasetError as e:
        problem = str(e)
    return problem and f"{path}: record {index}: {problem}"


def first_problem(path: str, expect_shape=None, need_label: bool = False) -> tuple[int, str] | None:
    """(index, "FILE: record I: what") of the first bad record of one file, or None: framing,
    data CRCs (read with TensorFlow), Example, shape, data length and label."""
    import tensorflow as tf

    try:
        frames = scan_records(path)
    except DatasetError as e:
        m = _RECORD_RE.search(str(e))
        return (int(m.group(1)) if m else 0), str(e)
    index_of = {}  # TensorFlow names the header offset (truncation) or the data offset (CRC)
    for i, (off, _) in enumerate(frames):
        index_of[off - 12] = index_of[off] = i
    i = 0
    try:
        for batch in tf.data.TFRecordDataset(path, buffer_size=1 << 20).batch(64):
            for rec in batch.numpy():
                problem = record_problem(path, i, rec, expect_shape, need_label)
                if problem:
                    return i, problem
                i += 1
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
        m = _OFFSET_RE.search(str(e))
        idx = index_of.get(int(m.group(1)), i) if m else i
        what = "truncated" if "truncated" in str(e) else "corrupt data (CRC mismatch)"
        return idx, f"{path}: record {idx}: {what}"
    if i != len(frames):
        return i, f"{path}: record {i}: TensorFlow read {i} records, framing shows {len(frames)}"
    return None


def verify_files(files, expect_shape=None, need_label: bool = False) -> str | None:
    """The first problem of `files` (see first_problem) as "FILE: record I: what", or None."""
    for path in files:
        problem = first_problem(path, expect_shape, need_label)
        if problem:
            return problem[1]
    return None


# ----------------------------------------------------------------------------------------------
# Manifest
# ----------------------------------------------------------------------------------------------

def manifest_path(directory: str, name: str) -> str:
    return os.path.join(directory, manifest_filename(name))


def read_manifest(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: not a {FORMAT_NAME} manifest")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise DatasetError(f"{path}: manifest format_version {m.get('format_version')} is newer "
                           f"than this reader ({FORMAT_VERSION})")
    for key in ("name", "levels", "count", "channels", "labels", "files"):
        if key not in m:
            raise DatasetError(f"{path}: manifest lacks '{key}'")
    return m


def write_manifest(path: str, manifest: dict) -> None:
    """Write atomically (temporary file then os.replace)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Finding and describing datasets
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a reader needs to know about one multi-LOD dataset.

    levels: the file levels r present (2 = 4x4 ... top; a held-out set may hold only its top
    level); files[r]: paths in part order; records[r]:
    records per file; parts[r] = len(files[r]); count: records per level (the same at every
    level); resolution = 2 ** top level; layout: 'parts' or 'stylegan'; manifest: the parsed
    manifest or None (StyleGAN / release datasets)."""
    name: str
    directory: str
    levels: list
    resolution: int
    channels: int
    count: int
    has_labels: bool
    parts: dict
    files: dict
    records: dict
    layout: str
    manifest: dict | None = None
    num_classes: int | None = None

    @property
    def top_level(self) -> int:
        return self.levels[-1]

    @property
    def prefix(self) -> str:
        return os.path.join(self.directory, self.name)

    def level_at(self, resolution: int) -> int:
        """The file level r holding images of `resolution` x `resolution`; DatasetError naming
        the resolution and the levels present when the dataset lacks it."""
        level = level_of_resolution(resolution)
        if level not in self.files:
            have = ", ".join(f"r{r:02d} ({2 ** r}x{2 ** r})" for r in self.levels)
            raise DatasetError(f"{self.prefix}: no {resolution}x{resolution} images (level "
                               f"r{level:02d}); the dataset holds {have}")
        return level

    def shape_at(self, level: int) -> tuple[int, int, int]:
        """(C, H, W) of the records of a level."""
        return (self.channels, 2 ** level, 2 ** level)


def _list_level_files(directory: str):
    """{name: {level: {part-or-None: path}}} of the level files in a folder."""
    found: dict = {}
    try:
        entries = os.listdir(directory)
    except OSError as e:
        raise DatasetError(f"{directory}: cannot list folder ({e.strerror or e})") from None
    for fn in entries:
        p = parse_filename(fn)
        if p is None or fn.endswith(".tmp"):
            continue
        name, level, part = p
        if level < MIN_LEVEL:
            continue
        found.setdefault(name, {}).setdefault(level, {})[part] = os.path.join(directory, fn)
    return found


def find_datasets(path: str) -> list[tuple[str, str]]:
    """(folder, name) of every dataset that `path` designates. Rules, in order:
    1. a folder: every dataset in it (by level files or manifests);
    2. a manifest file NAME.manifest.json: that dataset;
    3. one level file NAME-rXX.tfrecords[.NNN]: its dataset;
    4. a glob pattern: the datasets of the matching level files / manifests;
    5. a prefix FOLDER/NAME: the dataset NAME in FOLDER."""
    path = os.fspath(path)
    if os.path.isdir(path):
        names = set(_list_level_files(path))
        names |= {fn[: -len(MANIFEST_SUFFIX)] for fn in os.listdir(path)
                  if fn.endswith(MANIFEST_SUFFIX)}
        return sorted((os.path.abspath(path), n) for n in names)
    base = os.path.basename(path)
    if os.path.isfile(path) and base.endswith(MANIFEST_SUFFIX):
        return [(os.path.abspath(os.path.dirname(path) or "."), base[: -len(MANIFEST_SUFFIX)])]
    if os.path.isfile(path) and parse_filename(base):
        return [(os.path.abspath(os.path.dirname(path) or "."), parse_filename(base)[0])]
    if _GLOB_CHARS & set(path):
        out = set()
        for p in glob.glob(path):
            b = os.path.basename(p)
            d = os.path.abspath(os.path.dirname(p) or ".")
            if b.endswith(MANIFEST_SUFFIX):
                out.add((d, b[: -len(MANIFEST_SUFFIX)]))
            elif parse_filename(b) and os.path.isfile(p):
                out.add((d, parse_filename(b)[0]))
        return sorted(out)
    directory, name = os.path.dirname(path) or ".", base
    if name and os.path.isdir(directory) and (
            name in _list_level_files(directory)
            or os.path.isfile(manifest_path(directory, name))):
        return [(os.path.abspath(directory), name)]
    return []


def resolve(path: str) -> tuple[str, str]:
    """(folder, name) of the single dataset designated by `path` (see find_datasets). A folder
    holding one training set NAME and its held-out NAME_test designates NAME."""
    found = find_datasets(path)
    if not found:
        if not os.path.exists(path) and not (_GLOB_CHARS & set(os.fspath(path))):
            parent = os.path.dirname(os.fspath(path)) or "."
            if not os.path.isdir(parent):
                raise DatasetError(f"{path}: no such folder")
        raise DatasetError(f"{path}: no dataset found (expected files NAME-rXX.tfrecords[.NNN])")
    if len(found) > 1:
        # a training set with its held-out companion(s) NAME_test: the folder means NAME
        mains = [(d, n) for d, n in found if not n.endswith(TEST_SUFFIX)]
        if len(mains) == 1 and all(n == mains[0][1] + TEST_SUFFIX
                                   for d, n in found if (d, n) != mains[0]):
            return mains[0]
        names = ", ".join(n for _, n in found)
        raise DatasetError(f"{path}: holds {len(found)} datasets ({names}); pass FOLDER/NAME "
                           f"to pick one")
    return found[0]


_SCAN_CACHE: dict = {}


def count_records(path: str) -> int:
    """Number of records of a file (framing checked), cached by (path, size, mtime)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _SCAN_CACHE:
        _SCAN_CACHE[key] = len(scan_records(path))
    return _SCAN_CACHE[key]


def _first_record(files):
    for path in files:
        for _, rec in iter_records(path, scan_records(path, limit=1)):
            return path, rec
    return None, None


def count_mismatch(prefix: str, files: dict, records: dict) -> str | None:
    """None when every level holds as many records, else a one-line message. It names the odd
    file when the levels have the same parts and exactly one file differs from the strict
    majority count of its part across levels (StyleGAN layout: one part per level); otherwise
    it names the dataset `prefix` and the count of each level."""
    counts = {r: sum(records[r]) for r in sorted(records)}
    if len(set(counts.values())) <= 1:
        return None
    detail = ", ".join(f"r{r:02d}={c}" for r, c in counts.items())
    parts = {r: [(parse_filename(f) or (None, None, i))[2] for i, f in enumerate(files[r])]
             for r in counts}
    odd = []
    if len({tuple(p) for p in parts.values()}) == 1:
        for i, part in enumerate(next(iter(parts.values()))):
            tally: dict = {}
            for r in counts:
                tally[records[r][i]] = tally.get(records[r][i], 0) + 1
            common = max(tally, key=tally.get)
            if 2 * tally[common] <= len(counts):
                odd = []
                break
            odd += [(r, i, part, common) for r in counts if records[r][i] != common]
    if len(odd) != 1:
        return f"{prefix}: levels hold different record counts ({detail})"
    r, i, part, common = odd[0]
    where = ("the other levels hold" if len(files[r]) == 1 or part is None
             else f"part {part:03d} of the other levels holds")
    return (f"{files[r][i]}: {records[r][i]} records, where {where} {common} (levels hold "
            f"different record counts: {detail})")


def manifest_mismatch(manifest: dict, levels: list[int], count: int | None,
                      channels: int | None = None, has_labels: bool | None = None) -> str | None:
    """None when the manifest's levels, resolution, count (and channels / labels, where
    given: what the records hold) agree with the files, else what differs, in one line."""
    said = [int(r) for r in manifest.get("levels", [])]
    if said != sorted(levels):
        return (f"levels {', '.join('r%02d' % r for r in said)} but the files hold "
                f"{', '.join('r%02d' % r for r in sorted(levels))}")
    if "resolution" in manifest and int(manifest["resolution"]) != 2 ** max(levels):
        return f"resolution {manifest['resolution']} but the top level is {2 ** max(levels)} px"
    if count is not None and "count" in manifest and int(manifest["count"]) != count:
        return f"count {manifest['count']} but the files hold {count} records per level"
    if channels is not None and int(manifest.get("channels", channels)) != channels:
        return f"channels {manifest['channels']} but the records hold {channels}"
    if has_labels is not None and bool(manifest.get("labels", has_labels)) != has_labels:
        return (f"labels {bool(manifest['labels'])} but the records have "
                f"{'a' if has_labels else 'no'} 'label'")
    return None


def describe(path: str, *, check_sizes: bool = True) -> DatasetInfo:
    """DatasetInfo of the single dataset that `path` designates (see find_datasets).

    With a manifest: levels, counts, channels and labels come from it, and every file listed
    must exist with the byte size the manifest records. Without one (StyleGAN or release
    datasets): the framing of every file is scanned to count records. Either way, the first
    record of each level is decoded and checked against [C, 2**r, 2**r].
    check_sizes=False accepts files whose size differs from the manifest's (for readers that
    skip corrupt records).
    Raises DatasetError (one line, naming the path / level / file) on any inconsistency."""
    directory, name = resolve(path)
    prefix = os.path.join(directory, name)
    listed = _list_level_files(directory).get(name, {})
    mpath = manifest_path(directory, name)
    manifest = read_manifest(mpath) if os.path.isfile(mpath) else None

    files: dict = {}
    records: dict = {}
    if manifest is not None:
        levels = sorted(int(r) for r in manifest["levels"])
        for r in levels:
            entries = manifest["files"].get(str(r)) or manifest["files"].get(r)
            if not entries:
                raise DatasetError(f"{mpath}: manifest lists no files for level r{r:02d}")
            files[r], records[r] = [], []
            for e in entries:
                fp = os.path.join(directory, e["file"])
                try:
                    size = os.path.getsize(fp)
                except OSError:
                    raise DatasetError(f"{fp}: missing (listed in {mpath}), level r{r:02d}") \
                        from None
                if check_sizes and "bytes" in e and size != int(e["bytes"]):
                    raise DatasetError(f"{fp}: {size} bytes but the manifest records "
                                       f"{e['bytes']} (truncated or replaced?)")
                if not os.access(fp, os.R_OK):
                    raise DatasetError(f"{fp}: cannot be read (permission denied)")
                files[r].append(fp)
                records[r].append(int(e["records"]))
        channels = int(manifest["channels"])
        has_labels = bool(manifest["labels"])
        layout = manifest.get("layout", LAYOUT_PARTS)
        num_classes = manifest.get("num_classes")
    else:
        if not listed:
            raise DatasetError(f"{prefix}: no level files {name}-rXX.tfrecords[.NNN]")
        levels = sorted(listed)
        layouts = set()
        for r in levels:
            parts = listed[r]
            if None in parts and len(parts) > 1:
                raise DatasetError(f"{prefix}: level r{r:02d} has both {level_filename(name, r)}"
                                   f" and part files; remove one set")
            if None in parts:
                layouts.add(LAYOUT_STYLEGAN)
                files[r] = [parts[None]]
            else:
                layouts.add(LAYOUT_PARTS)
                idx = sorted(parts)
                if idx != list(range(len(idx))):
                    missing = sorted(set(range(max(idx) + 1)) - set(idx))
                    raise DatasetError(f"{prefix}: level r{r:02d} misses part(s) "
                                       f"{', '.join('%03d' % m for m in missing)}")
                files[r] = [parts[i] for i in idx]
            records[r] = [count_records(f) for f in files[r]]
        layout = layouts.pop() if len(layouts) == 1 else "mixed"
        channels, has_labels, num_classes = None, None, None

    top = levels[-1]
    problem = count_mismatch(prefix, files, records)
    if problem:
        raise DatasetError(problem)
    count = sum(records[top])
    if manifest is not None:
        problem = manifest_mismatch(manifest, levels, count)
        if problem:
            raise DatasetError(f"{mpath}: {problem}")

    for r in reversed(levels):
        fp, rec = _first_record(files[r])
        if rec is None:
            if count == 0:
                break
            continue
        try:
            fields = decode_example(rec)
        except DatasetError as e:
            raise DatasetError(f"{fp}: record 0: {e}") from None
        if channels is None:
            shape = fields.get(KEY_SHAPE) or [0]
            channels = int(shape[0])
            has_labels = KEY_LABEL in fields
            if channels not in (1, 2, 3, 4):
                raise DatasetError(f"{fp}: record 0: shape {list(shape)} is not [C, H, W] "
                                   f"with 1 to 4 channels")
        problem = check_fields(fields, (channels, 2 ** r, 2 ** r))
        if problem:
            raise DatasetError(f"{fp}: record 0: {problem} (level r{r:02d})")
        if manifest is not None:
            problem = manifest_mismatch(manifest, levels, count,
                                        has_labels=KEY_LABEL in fields)
            if problem:
                raise DatasetError(f"{mpath}: {problem} ({fp}: record 0)")
    if channels is None:
        raise DatasetError(f"{prefix}: the dataset holds no records")
    return DatasetInfo(
        name=name, directory=directory, levels=levels, resolution=2 ** top,
        channels=channels, count=count, has_labels=bool(has_labels),
        parts={r: len(files[r]) for r in levels}, files=files, records=records,
        layout=layout, manifest=manifest, num_classes=num_classes)


def dataset_files(directory: str, name: str) -> list[str]:
    """Every level file and the manifest of dataset NAME in a folder (for overwrite / cleanup)."""
    out = [p for lv in _list_level_files(directory).get(name, {}).values() for p in lv.values()]
    for extra in (manifest_path(directory, name), names_path(directory, name)):
        if os.path.exists(extra):
            out.append(extra)
    return sorted(out)
