"""Reads PyTorch checkpoint files (.pth) without torch and without running code from them.

Both formats that ``torch.save`` writes are read: the zip archive (torch >= 1.6: ``data.pkl`` and
one file per storage) and the legacy format of earlier versions (a sequence of pickles followed by
the raw storages). The pickles are read by a restricted unpickler: tensors become numpy arrays,
plain containers stay what they are, and every other class or function the file names becomes an
inert :class:`Opaque` placeholder that records its arguments and state. Nothing is imported and
no callable from the file is ever run (pickle's ``find_class`` is the only way a pickle reaches
code, and here it returns only the functions below or a placeholder).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "Opaque", "load"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch's storage classes -> numpy dtypes ("BFloat16" has none: read as uint16, widened below).
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a PyTorch checkpoint this reader can read; the message names the file."""


class Opaque:
    """An object of a class the checkpoint names but this reader does not trust (or know).

    ``module`` and ``name`` say what it was; ``args`` and ``state`` hold what the pickle gave to
    build it (tensors in them are read like any other). It has no behaviour.
    """

    module = "?"
    name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items = args, None, []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    # A pickled list or dict subclass fills itself with these.
    def append(self, value):
        self.items.append(value)

    def extend(self, values):
        self.items.extend(values)

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def __repr__(self):
        return f"<opaque {self.module}.{self.name}>"


_OPAQUE_CLASSES: dict[tuple[str, str], type] = {}


def _opaque_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _OPAQUE_CLASSES:
        _OPAQUE_CLASSES[key] = type(f"Opaque_{name}", (Opaque,), {"module": module, "name": name})
    return _OPAQUE_CLASSES[key]


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """One storage: its dtype, element count and (once read) its elements."""

    def __init__(self, storage_type: _StorageType, numel: int, key: str):
        self.type, self.numel, self.key = storage_type, int(numel), key
        self.data: np.ndarray | None = None


class _TensorRef:
    """A tensor whose storage may not be read yet (the legacy format stores it after the pickle)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def array(self, path: str) -> np.ndarray:
        s = self.storage
        if not isinstance(s, _Storage) or s.data is None:
            raise CheckpointError(f"{path}: a tensor refers to a storage that the file does not hold")
        if any(d < 0 for d in self.size) or len(self.size) != len(self.stride):
            raise CheckpointError(f"{path}: storage {s.key}: bad tensor shape {self.size} / strides {self.stride}")
        if self.size and min(self.size) == 0:
            out = np.zeros(self.size, s.data.dtype)
        else:
            last = self.offset + sum((d - 1) * st for d, st in zip(self.size, self.stride))
            if self.offset < 0 or any(st < 0 for st in self.stride) or last >= s.data.size:
                raise CheckpointError(f"{path}: storage {s.key} holds {s.data.size} elements but a tensor "
                                      f"of shape {self.size} reads up to element {last}")
            item = s.data.itemsize
            out = np.lib.stride_tricks.as_strided(s.data[self.offset:], self.size,
                                                  [st * item for st in self.stride]).copy()
        if s.type.name == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


def _reconstructor(cls, base, state=None):
    """copyreg._reconstructor, which pickles of protocol < 2 use for plain objects."""
    obj = cls.__new__(cls) if isinstance(cls, type) and issubclass(cls, Opaque) else _opaque_class("?", "?")()
    obj.args = (state,)
    return obj


def _empty_ordered_dict(*args):
    return collections.OrderedDict()


# The only callables a checkpoint may reach, by (module, name).
_SAFE = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): _empty_ordered_dict,
    ("torch", "Size"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("copyreg", "_reconstructor"): _reconstructor,
}


class _Unpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves names only to _SAFE callables, storage types or Opaque."""

    def __init__(self, file, storages: dict | None = None, legacy: bool = False):
        super().__init__(file, encoding="latin1")
        self.storages = storages
        self.legacy = legacy

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE:
            return _SAFE[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        return _opaque_class(module, name)

    def persistent_load(self, pid):
        if self.storages is None:
            raise pickle.UnpicklingError("a storage reference outside the checkpoint's main pickle")
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unknown persistent reference {str(pid)[:60]}")
        if len(pid) < 5 or not isinstance(pid[1], _StorageType):
            kind = getattr(pid[1], "name", pid[1]) if len(pid) > 1 else "?"
            raise pickle.UnpicklingError(f"unsupported storage type {kind}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type, numel, key)
        storage = self.storages[key]
        view = pid[5] if self.legacy and len(pid) > 5 else None
        if view is not None:  # a view into a root storage: (view key, offset, size)
            return _StorageView(storage, int(view[1]), int(view[2]))
        return storage


class _StorageView:
    """A legacy storage view: elements [offset, offset + size) of a root storage."""

    def __init__(self, root: _Storage, offset: int, size: int):
        self.root, self.offset, self.size = root, offset, size

    def resolve(self) -> _Storage:
        s = _Storage(self.root.type, self.size, f"{self.root.key}[{self.offset}:]")
        if self.root.data is not None:
            s.data = self.root.data[self.offset:self.offset + self.size]
        return s


def _resolve(obj, path: str, seen: dict):
    """Replaces every _TensorRef in ``obj`` (containers and Opaque contents) by its array."""
    if isinstance(obj, _TensorRef):
        if isinstance(obj.storage, _StorageView):
            obj.storage = obj.storage.resolve()
        return obj.array(path)
    if id(obj) in seen:
        return seen[id(obj)]
    if isinstance(obj, dict):
        seen[id(obj)] = obj
        for k in list(obj):
            obj[k] = _resolve(obj[k], path, seen)
    elif isinstance(obj, list):
        seen[id(obj)] = obj
        obj[:] = [_resolve(v, path, seen) for v in obj]
    elif isinstance(obj, tuple):
        out = tuple(_resolve(v, path, seen) for v in obj)
        seen[id(obj)] = out
        return out
    elif isinstance(obj, Opaque):
        seen[id(obj)] = obj
        obj.args = _resolve(obj.args, path, seen)
        obj.state = _resolve(obj.state, path, seen)
        obj.items = _resolve(obj.items, path, seen)
    return obj


def _fill(storage: _Storage, raw: bytes, path: str, byteorder: str = "little"):
    dtype = storage.type.dtype.newbyteorder("<" if byteorder == "little" else ">")
    need = storage.numel * dtype.itemsize
    if len(raw) < need:
        raise CheckpointError(f"{path}: storage {storage.key} is truncated ({len(raw)} of {need} bytes)")
    storage.data = np.frombuffer(raw[:need], dtype).astype(storage.type.dtype)


def _load_zip(path: str, archive: zipfile.ZipFile):
    names = archive.namelist()
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(f"{path}: a zip file but not a PyTorch checkpoint (no data.pkl)")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path}: unknown byte order {byteorder!r}")
    storages: dict = {}
    obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
    for key, storage in storages.items():
        member = f"{prefix}data/{key}"
        if member not in names:
            raise CheckpointError(f"{path}: storage {key} is missing from the archive ({member})")
        _fill(storage, archive.read(member), path, byteorder)
    return obj


def _load_legacy(path: str, fh):
    def plain_load():
        return _Unpickler(fh).load()

    magic = plain_load()
    if magic != _LEGACY_MAGIC:
        raise CheckpointError(f"{path}: a pickle, but not a PyTorch checkpoint (no torch.save magic number)")
    protocol = plain_load()
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: legacy PyTorch format version {protocol!r}, expected {_LEGACY_PROTOCOL}")
    sys_info = plain_load()
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    storages: dict = {}
    obj = _Unpickler(fh, storages, legacy=True).load()
    keys = _Unpickler(fh).load()
    if not isinstance(keys, list):
        raise CheckpointError(f"{path}: the storage list of the legacy format is missing")
    for key in keys:
        key = str(key)
        if key not in storages:
            raise CheckpointError(f"{path}: storage {key} is listed but no tensor uses it")
        storage = storages[key]
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: storage {key} is truncated (no size)")
        numel = struct.unpack("<q" if little else ">q", head)[0]
        if numel != storage.numel:
            raise CheckpointError(f"{path}: storage {key} holds {numel} elements, its tensors expect {storage.numel}")
        _fill(storage, fh.read(numel * storage.type.dtype.itemsize), path, "little" if little else "big")
    return obj


def load(path: str) -> Any:
    """The object a .pth file holds, with tensors as numpy arrays and untrusted objects as Opaque.

    Raises CheckpointError (one line, naming the file) for anything that is not a readable
    PyTorch checkpoint.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                obj = _load_zip(path, archive)
        elif tarfile.is_tarfile(path):
            raise CheckpointError(f"{path}: the tar format of torch 0.3 and older is not supported; load and "
                                  f"save it again with a newer torch")
        else:
            with open(path, "rb") as fh:
                obj = _load_legacy(path, fh)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, zipfile.BadZipFile, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'})") from None
    return _resolve(obj, path, {})
