"""Read checkpoints written by ``torch.save`` into NumPy arrays, without importing torch.

>>> obj = load_torch_file("nanotrackv2.pth")      # {'epoch': 34, 'state_dict': OrderedDict(...), 'optimizer': ...}
>>> obj["state_dict"]["backbone.features.0.0.weight"].shape
(16, 3, 3, 3)

Both on-disk formats of ``torch.save`` are read:

* **zip** (torch ≥ 1.6, the default): ``<stem>/data.pkl`` (the pickled object), ``<stem>/data/<key>`` (raw
  storage bytes), optionally ``<stem>/byteorder`` (``little``/``big``; little when absent).
* **legacy** (torch < 1.6 or ``_use_new_zipfile_serialization=False``): consecutive pickles — magic number,
  protocol version 1001, sys info, the object, the sorted list of storage keys — then, per key, an int64
  element count and the raw little-endian bytes.

The pickle is read by a restricted unpickler: every global it references must be on a short allow-list
(:data:`ALLOWED_GLOBALS`, plus the ``torch.*Storage`` types and the ``torch.<dtype>`` objects); anything else
(``os.system``, ``builtins.eval``, arbitrary classes) is refused with :class:`UnsafeCheckpointError` naming it,
before anything is called. The allowed names are *not* imported: each is replaced by a small NumPy stand-in
(tensors become ``np.ndarray`` with their dtype — float16 stays float16, bfloat16 is ``ml_dtypes.bfloat16``,
int64 stays int64 — parameters become plain arrays, ``torch.Size`` a tuple, NumPy scalars NumPy scalars).

Tensors are rebuilt exactly as torch does: storage offset and strides (non-contiguous and zero-stride views are
gathered with ``as_strided`` and copied), 0-dim tensors, tensors sharing a storage, the ``neg``/``conj`` bits.
Every returned array owns its memory. Truncated or corrupt files raise ``ValueError`` naming the file.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ALLOWED_GLOBALS", "UnsafeCheckpointError", "load_torch_file"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


class UnsafeCheckpointError(ValueError):
    """The pickle references a global that a weights file has no business referencing."""


# ---------------------------------------------------------------------------------------------------- dtypes


def _ml_dtype(name: str) -> np.dtype:
    import ml_dtypes  # a jax dependency; only needed for these dtypes

    return np.dtype(getattr(ml_dtypes, name))


# torch dtype name -> NumPy dtype factory (ml_dtypes for bfloat16 / float8).
_TORCH_DTYPES: dict[str, Any] = {
    "float64": lambda: np.dtype(np.float64),
    "float32": lambda: np.dtype(np.float32),
    "float16": lambda: np.dtype(np.float16),
    "bfloat16": lambda: _ml_dtype("bfloat16"),
    "int64": lambda: np.dtype(np.int64),
    "int32": lambda: np.dtype(np.int32),
    "int16": lambda: np.dtype(np.int16),
    "int8": lambda: np.dtype(np.int8),
    "uint8": lambda: np.dtype(np.uint8),
    "uint16": lambda: np.dtype(np.uint16),
    "uint32": lambda: np.dtype(np.uint32),
    "uint64": lambda: np.dtype(np.uint64),
    "bool": lambda: np.dtype(np.bool_),
    "complex128": lambda: np.dtype(np.complex128),
    "complex64": lambda: np.dtype(np.complex64),
    "float8_e4m3fn": lambda: _ml_dtype("float8_e4m3fn"),
    "float8_e5m2": lambda: _ml_dtype("float8_e5m2"),
    "float8_e4m3fnuz": lambda: _ml_dtype("float8_e4m3fnuz"),
    "float8_e5m2fnuz": lambda: _ml_dtype("float8_e5m2fnuz"),
}

# torch.<Name>Storage -> torch dtype name (torch/storage.py ``_dtype_to_storage_type_map``, minus quantized types).
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "UntypedStorage": "uint8",  # bytes; torch 2.x saves new dtypes as UntypedStorage + an explicit dtype
}


class _TorchDtype:
    """Stand-in for a ``torch.<dtype>`` object referenced by the pickle (``_rebuild_tensor_v3``)."""

    def __init__(self, name: str):
        self.name = name
        self.np = _TORCH_DTYPES[name]()

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageType:
    """Stand-in for a ``torch.<Name>Storage`` class."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_TORCH_DTYPES[_STORAGE_DTYPES[name]]())

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    """One storage: its dtype, element count and (once read) its bytes in native byte order."""

    def __init__(self, key: str, dtype: np.dtype, numel: int, location: str):
        self.key, self.dtype, self.numel, self.location = key, dtype, numel, location
        self.data: bytes | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


class _PendingTensor:
    """A tensor whose storage bytes come later in the file (legacy format)."""

    def __init__(self, storage, offset, size, stride, dtype, metadata):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.dtype, self.metadata = dtype, metadata


def _to_native(data: bytes, dtype: np.dtype, byteorder: str) -> bytes:
    """Storage bytes in the machine's byte order (torch writes zip storages in the writer's order)."""
    if byteorder == _NATIVE or dtype.itemsize == 1:
        return data
    unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    return np.frombuffer(data, dtype=np.dtype(f"u{unit}").newbyteorder(">" if byteorder == "big" else "<")).astype(
        np.dtype(f"u{unit}")
    ).tobytes()


_NATIVE = "little" if np.little_endian else "big"


def _materialize(t: _PendingTensor, where: str) -> np.ndarray:
    st = t.storage
    if st.data is None:
        raise ValueError(f"tensor refers to storage {st.key!r}, whose data is missing")
    dtype = t.dtype if t.dtype is not None else st.dtype
    size = tuple(int(s) for s in t.size)
    stride = tuple(int(s) for s in t.stride)
    offset = int(t.offset)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise ValueError(f"{where}: invalid tensor geometry size={size} stride={stride} offset={offset}")
    available = len(st.data) // dtype.itemsize
    n = int(np.prod(size, dtype=np.int64))
    if n == 0:
        arr = np.zeros(size, dtype)
    else:
        last = offset + sum((s - 1) * k for s, k in zip(size, stride))
        if last >= available:
            raise ValueError(
                f"{where}: tensor of size {size} stride {stride} offset {offset} needs {last + 1} elements of "
                f"storage {st.key!r}, which holds {available} (truncated or corrupt file)"
            )
        if n > 16 * available + (1 << 20):  # zero strides can make a tiny storage claim a huge tensor
            raise ValueError(f"{where}: a view of {n} elements over a storage of {available} is implausibly large")
        flat = np.frombuffer(st.data, dtype=dtype, count=available)
        contiguous, expect = True, 1
        for s, k in zip(reversed(size), reversed(stride)):
            if s != 1 and k != expect:
                contiguous = False
            expect *= s
        if contiguous:
            arr = flat[offset : offset + n].reshape(size).copy()
        else:
            view = np.lib.stride_tricks.as_strided(
                flat[offset:], shape=size, strides=tuple(k * dtype.itemsize for k in stride), writeable=False
            )
            arr = np.array(view, copy=True, order="C")
    meta = t.metadata or {}
    if meta.get("neg"):
        arr = -arr
    if meta.get("conj"):
        arr = np.conj(arr)
    return arr


# ---------------------------------------------------------------------------------------------------- allowed globals


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _rebuild(storage, storage_offset, size, stride, None, metadata)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    if not isinstance(dtype, _TorchDtype):
        raise UnsafeCheckpointError(f"_rebuild_tensor_v3 got dtype {dtype!r}, not a torch dtype")
    return _rebuild(storage, storage_offset, size, stride, dtype.np, metadata)


def _rebuild(storage, offset, size, stride, dtype, metadata):
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError(f"a tensor was rebuilt from {type(storage).__name__}, not from a storage")
    if not isinstance(size, tuple) or not isinstance(stride, tuple):
        raise ValueError(f"tensor size/stride must be tuples, got {size!r} / {stride!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"tensor metadata must be a dict, got {type(metadata).__name__}")
    pending = _PendingTensor(storage, offset, size, stride, dtype, metadata)
    if storage.data is None:  # legacy format: the storages follow the pickle
        return pending
    return _materialize(pending, f"storage {storage.key!r}")


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None):
    return data  # an nn.Parameter is its tensor here


def _torch_size(dims=()):
    return tuple(int(d) for d in dims)


class _NumpyDtypeSpec:
    """Stand-in for ``numpy.dtype(name, align, copy)`` + its pickled state (only the byte order is used)."""

    def __init__(self, name, align=False, copy=False):
        if not isinstance(name, str) or len(name) > 4:
            raise UnsafeCheckpointError(f"numpy.dtype({name!r}) is not a plain numeric dtype")
        try:
            dt = np.dtype(name)
        except TypeError as err:
            raise ValueError(f"numpy.dtype({name!r}): {err}") from None
        if dt.kind not in "biufc" or dt.fields is not None or dt.hasobject:
            raise UnsafeCheckpointError(f"numpy.dtype({name!r}) is not a plain numeric dtype")
        self.dtype = dt

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "="
        if order not in ("<", ">", "=", "|"):
            raise ValueError(f"numpy dtype state has byte order {order!r}")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _NumpyDtypeSpec) or not isinstance(data, bytes):
        raise UnsafeCheckpointError("numpy scalar with a non-numeric dtype or non-bytes payload")
    dt = dtype.dtype
    if len(data) != dt.itemsize:
        raise ValueError(f"numpy scalar of dtype {dt} needs {dt.itemsize} bytes, got {len(data)}")
    return np.frombuffer(data, dt)[0].astype(dt.newbyteorder("="))


def _codecs_encode(obj, encoding="utf-8"):
    # Protocol-2 pickles store ``bytes`` as _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"_codecs.encode with {type(obj).__name__} / {encoding!r}")
    return obj.encode("latin1")


# Exact (module, name) pairs the unpickler accepts, with their torch-free stand-ins. Found necessary by reading
# the real NanoTrack checkpoints (which pickle a numpy.float64 learning rate in the optimizer state) and files
# written by torch 2.13 (state dicts, whole parameter lists, new dtypes).
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): _torch_size,
    ("numpy", "dtype"): _NumpyDtypeSpec,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("_codecs", "encode"): _codecs_encode,
}


def allowed_global_names() -> list[str]:
    """Every ``module.name`` the reader accepts (for messages and documentation)."""
    names = [f"{m}.{n}" for m, n in ALLOWED_GLOBALS]
    names += [f"torch.{s}" for s in _STORAGE_DTYPES] + [f"torch.{d}" for d in _TORCH_DTYPES]
    return sorted(names)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage], load_storage, legacy: bool):
        super().__init__(file, encoding="utf-8")
        self._storages = storages
        self._load_storage = load_storage  # key, storage -> None (fills storage.data) or None (legacy)
        self._legacy = legacy

    def find_class(self, module, name):  # every GLOBAL / STACK_GLOBAL / EXT opcode comes here
        if module in ("torch", "torch.cuda", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise UnsafeCheckpointError(
                f"refused to unpickle {module}.{name}: it is not on the allow-list of a weights file "
                f"(tensors, storages, OrderedDict, torch.Size, numpy scalars). Loading this file with "
                f"torch.load(weights_only=False) would call {module}.{name}; only do that if you trust the file, "
                f"then re-save just its state_dict."
            )
        return found

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise ValueError(f"unexpected persistent id {pid!r}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename != "storage":
            raise ValueError(
                f"persistent id of type {typename!r} (e.g. a whole pickled nn.Module in a legacy file) is not "
                "supported: save model.state_dict() instead"
            )
        if self._legacy:
            if len(pid) != 6:
                raise ValueError(f"legacy storage id has {len(pid)} fields, expected 6")
            _, storage_type, key, location, numel, view_metadata = pid
        else:
            if len(pid) != 5:
                raise ValueError(f"storage id has {len(pid)} fields, expected 5")
            _, storage_type, key, location, numel = pid
            view_metadata = None
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"storage of type {storage_type!r} is not a torch storage type")
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        location = location.decode("ascii") if isinstance(location, bytes) else str(location)
        if not isinstance(numel, int) or numel < 0:
            raise ValueError(f"storage {key!r} has invalid element count {numel!r}")
        storage = self._storages.get(key)
        if storage is None:
            storage = _Storage(key, storage_type.dtype, numel, location)
            self._storages[key] = storage
            if self._load_storage is not None:
                self._load_storage(storage)
        if view_metadata is not None:  # pre-1.0 storage views: (view_key, offset, size) in elements
            raise ValueError(f"storage views (view metadata {view_metadata!r}) from torch < 1.0 are not supported")
        return storage


# ---------------------------------------------------------------------------------------------------- formats


def _load_zip(path: Path) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ValueError(
            f"{path}: truncated or corrupt torch zip checkpoint ({err}; the file has {path.stat().st_size} bytes)"
        ) from None
    with zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if any(n.endswith("/constants.pkl") for n in names):
            raise ValueError(f"{path}: a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
        if len(pkls) != 1:
            raise ValueError(f"{path}: zip archive without a single '<name>/data.pkl' record (found {pkls[:3]})")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ValueError(f"{path}: unknown byte order record {byteorder!r}")

        def load_storage(storage: _Storage) -> None:
            name = f"{prefix}data/{storage.key}"
            try:
                data = zf.read(name)
            except KeyError:
                raise ValueError(f"storage record {name!r} is missing") from None
            if len(data) < storage.nbytes:
                raise ValueError(
                    f"storage record {name!r} has {len(data)} bytes, the pickle expects {storage.nbytes} "
                    f"({storage.numel} x {storage.dtype})"
                )
            if len(data) > storage.nbytes:
                data = data[: storage.nbytes]
            storage.data = _to_native(data, storage.dtype, byteorder)

        unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pkls[0])), {}, load_storage, legacy=False)
        return unpickler.load()


def _load_legacy(path: Path, raw: bytes) -> Any:
    f = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}

    def header():
        return _RestrictedUnpickler(f, storages, None, legacy=True).load()

    magic = header()
    if magic != LEGACY_MAGIC_NUMBER:
        raise ValueError(f"{path}: not a torch checkpoint (no zip header, and the legacy magic number is {magic!r})")
    version = header()
    if version != LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"{path}: unsupported legacy protocol version {version!r} (expected 1001)")
    header()  # sys info; storage bytes are little-endian whatever the writing machine (torch's _write_file)
    obj = _RestrictedUnpickler(f, storages, None, legacy=True).load()
    keys = _RestrictedUnpickler(f, storages, None, legacy=True).load()
    if not isinstance(keys, list):
        raise ValueError(f"{path}: storage key list is a {type(keys).__name__}")
    for key in keys:
        key = str(key)
        storage = storages.get(key)
        if storage is None:
            raise ValueError(f"{path}: storage key {key!r} listed but never referenced")
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: truncated: the data of storage {key!r} is missing (file ends at {f.tell()})")
        count = int.from_bytes(head, "little", signed=True)
        nbytes = count * storage.dtype.itemsize
        if count != storage.numel:
            raise ValueError(f"{path}: storage {key!r} holds {count} elements, the pickle expects {storage.numel}")
        data = f.read(nbytes)
        if len(data) < nbytes:
            raise ValueError(
                f"{path}: truncated: storage {key!r} needs {nbytes} bytes, only {len(data)} remain"
            )
        storage.data = _to_native(data, storage.dtype, "little")
    missing = sorted(k for k, s in storages.items() if s.data is None)
    if missing:
        raise ValueError(f"{path}: storages {missing[:5]} are referenced but absent from the file")
    return _resolve(obj, {})


def _resolve(obj, seen: dict[int, Any]):
    """Replace pending tensors (legacy format) by arrays, in place for lists/dicts."""
    if isinstance(obj, _PendingTensor):
        if id(obj) not in seen:
            seen[id(obj)] = _materialize(obj, f"storage {obj.storage.key!r}")
        return seen[id(obj)]
    if isinstance(obj, (dict, list)):
        if id(obj) in seen:
            return obj
        seen[id(obj)] = obj
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in list(items):
            obj[k] = _resolve(v, seen)
        if isinstance(obj, collections.OrderedDict) and getattr(obj, "__dict__", None):
            for k, v in list(vars(obj).items()):
                setattr(obj, k, _resolve(v, seen))
        return obj
    if isinstance(obj, tuple):
        return tuple(_resolve(v, seen) for v in obj)
    return obj


def load_torch_file(path: str | os.PathLike) -> Any:
    """The object saved by ``torch.save`` at ``path``, tensors as NumPy arrays (torch is not imported).

    Raises ``FileNotFoundError`` for a missing file, :class:`UnsafeCheckpointError` (a ``ValueError``) when the
    pickle references a global outside the allow-list, and ``ValueError`` naming the file for truncated,
    corrupt or unsupported files.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        raise ValueError(f"{path}: empty file")
    try:
        if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(path):
            return _load_zip(path)
        if len(head) >= 262 and head[257:262] == b"ustar":
            raise ValueError(f"{path}: tar-format torch checkpoint (torch < 0.4) is not supported")
        if head[:1] != b"\x80":
            raise ValueError(f"{path}: not a torch checkpoint (neither a zip archive nor a pickle stream)")
        return _load_legacy(path, path.read_bytes())
    except UnsafeCheckpointError as err:
        msg = str(err)
        raise UnsafeCheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, IndexError, KeyError, TypeError,
            AttributeError, OverflowError, MemoryError, UnicodeDecodeError) as err:
        kind = type(err).__name__
        raise ValueError(f"{path}: truncated or corrupt checkpoint ({kind}: {err})") from None
