"""Fuzzing (hypothesis) of the converter's image decoding and the record parser: any input either
decodes or raises the one error type that names it; nothing else escapes."""
import io
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tfrecords_tools import format as fmt
from tfrecords_tools.sources import ImageError, ImageSpec, load_image

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEC = ImageSpec(resolution=8, channels=3, allow_upscale=True)


def _encoded(fmt_name: str) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(buf, fmt_name)
    return buf.getvalue()


VALID_IMAGES = {name: _encoded(name) for name in ("PNG", "JPEG", "BMP", "WEBP")}
VALID_RECORD = fmt.encode_example(np.arange(48, dtype=np.uint8).reshape(3, 4, 4), label=7)


def _mutate(data: bytes, edits, cut):
    raw = bytearray(data)
    for pos, value in edits:
        raw[pos % len(raw)] = value
    return bytes(raw[:max(0, len(raw) - cut)])


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8)


def _check_image(payload: bytes, tmp_path):
    path = os.path.join(tmp_path, "fuzz.img")
    with open(path, "wb") as f:
        f.write(payload)
    try:
        out = load_image(path, path, SPEC)
    except ImageError as e:
        assert str(e).startswith(path) and "\n" not in str(e)
        return
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8


@SETTINGS
@given(kind=st.sampled_from(sorted(VALID_IMAGES)), edits=edits, cut=st.integers(0, 200))
def test_mutated_images_decode_or_raise_image_error(tmp_path_factory, kind, edits, cut):
    _check_image(_mutate(VALID_IMAGES[kind], edits, cut), tmp_path_factory.mktemp("img"))


@SETTINGS
@given(payload=st.binary(max_size=300))
def test_random_bytes_as_image(tmp_path_factory, payload):
    _check_image(payload, tmp_path_factory.mktemp("img"))


def _check_record(payload: bytes):
    try:
        fields = fmt.decode_example(payload)
    except fmt.DatasetError as e:
        assert "\n" not in str(e)
        return
    problem = fmt.check_fields(fields, (3, 4, 4), True)
    assert problem is None or isinstance(problem, str)


@SETTINGS
@given(edits=edits, cut=st.integers(0, 40))
def test_mutated_records_parse_or_raise_dataset_error(edits, cut):
    _check_record(_mutate(VALID_RECORD, edits, cut))


@SETTINGS
@given(payload=st.binary(max_size=200))
def test_random_bytes_as_record(payload):
    _check_record(payload)


@SETTINGS
@given(edits=edits, cut=st.integers(0, 120))
def test_mutated_tfrecord_files_scan_or_raise_dataset_error(tmp_path_factory, edits, cut):
    """The framing scanner: a damaged file never crashes it, and a clean scan is self-consistent."""
    frame = struct.pack("<Q", len(VALID_RECORD))
    frame += struct.pack("<I", fmt.masked_crc32c(frame)) + VALID_RECORD
    frame += struct.pack("<I", fmt.masked_crc32c(VALID_RECORD))
    path = os.path.join(tmp_path_factory.mktemp("rec"), "f.tfrecords")
    with open(path, "wb") as f:
        f.write(_mutate(frame * 3, edits, cut))
    try:
        frames = fmt.scan_records(path)
    except fmt.DatasetError as e:
        assert str(e).startswith(path) and "\n" not in str(e)
        return
    size = os.path.getsize(path)
    assert all(off + length + 4 <= size for off, length in frames)


def test_fuzz_inputs_are_valid_when_unmutated(tmp_path):
    """The seeds of the fuzzers are themselves good inputs."""
    for data in VALID_IMAGES.values():
        path = tmp_path / "ok.img"
        path.write_bytes(data)
        assert load_image(str(path), str(path), SPEC).shape == (8, 8, 3)
    fields = fmt.decode_example(VALID_RECORD)
    assert fmt.check_fields(fields, (3, 4, 4), True) is None
