"""Reads a PyTorch state dict (`torch.save(model.state_dict(), path)`) without torch.

A .pth file is a pickle, and unpickling runs whatever callables the file names, so a
downloaded one is never given to `pickle.load`. `_RestrictedUnpickler` resolves only
the names a state dict of tensors uses (an OrderedDict, PyTorch's tensor rebuild
functions and its typed storage classes) to harmless stand-ins; any other name is an
error, before anything from it runs. Tensors are rebuilt with NumPy from their storage
bytes, offset, shape and strides.

Both of torch.save's formats are read:

  * the zip format (PyTorch >= 1.6): `<name>/data.pkl` with persistent ids
    ('storage', storage type, key, location, numel), each storage's bytes in
    `<name>/data/<key>`, their byte order in `<name>/byteorder`;
  * the legacy format: a magic-number pickle, the protocol version, a system-info
    pickle, the data pickle (persistent ids also carry a view description), the list
    of storage keys, then for each key its element count (int64) and bytes.
"""

import collections
import dataclasses
import io
import pickle
import struct
from typing import Dict, Optional, Tuple
import zipfile

import numpy as np

from alexnet_tf import errors

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# PyTorch's typed storage classes, as pickled ("torch", name), and their element types.
_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "LongStorage": "i8",
    "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: str  # NumPy type code without byte order, e.g. "f4"


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    key: str
    storage_type: _StorageType
    numel: int
    view: Optional[tuple] = None  # legacy views: (view key, offset, size)


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    """A tensor not yet read: its storage and where in it the elements lie."""
    storage: _StorageRef
    offset: int
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Stands for torch._utils._rebuild_tensor(_v2): records where the tensor lies."""
    del unused  # requires_grad, backward hooks, metadata: nothing to rebuild.
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("a tensor whose storage is not a storage reference")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


def _rebuild_parameter(data, *unused):
    """Stands for torch._utils._rebuild_parameter: a Parameter is its tensor."""
    del unused
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `_ALLOWED_GLOBALS` and storage references."""

    def __init__(self, file, path: str):
        super().__init__(file)
        self._path = path

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise errors.InvalidInputError(
                f"{self._path}: refused to load {module}.{name}: only a state dict of "
                "tensors is read (save one with torch.save(model.state_dict(), path))")
        return allowed

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise errors.InvalidInputError(f"{self._path}: an unknown persistent reference "
                                           f"{str(pid)[:80]!r}; expected tensor storages")
        view = pid[5] if len(pid) > 5 else None
        return _StorageRef(str(pid[2]), pid[1], int(pid[4]), tuple(view) if view else None)


def _unpickle(file, path: str):
    try:
        return _RestrictedUnpickler(file, path).load()
    except errors.UsageError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error) as error:
        raise errors.InvalidInputError(f"{path}: not a readable PyTorch pickle (truncated or "
                                       f"damaged): {errors.one_line(error)}") from None


def _tensor_array(ref: _TensorRef, storages: Dict[str, np.ndarray], name: str,
                  path: str) -> np.ndarray:
    """The tensor's elements, copied out of its storage (any strides)."""
    storage = storages[ref.storage.key]
    if ref.storage.view is not None:
        _, view_offset, view_size = ref.storage.view
        storage = storage[int(view_offset):int(view_offset) + int(view_size)]
    if any(size < 0 for size in ref.shape) or len(ref.shape) != len(ref.stride):
        raise errors.InvalidInputError(f"{path}: tensor {name!r} has shape {ref.shape} and "
                                       f"strides {ref.stride}")
    last = ref.offset + sum((size - 1) * step for size, step in zip(ref.shape, ref.stride)
                            if size > 0)
    if 0 in ref.shape:
        return np.zeros(ref.shape, storage.dtype.newbyteorder("="))
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or last >= storage.size:
        raise errors.InvalidInputError(
                f"{path}: tensor {name!r} of shape {ref.shape} reaches element {last} of a "
                f"storage of {storage.size} (damaged file)")
    view = np.lib.stride_tricks.as_strided(
            storage[ref.offset:], shape=ref.shape,
            strides=[step * storage.itemsize for step in ref.stride], writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="))


def _storage_array(data: bytes, ref: _StorageRef, byte_order: str, path: str) -> np.ndarray:
    dtype = np.dtype(byte_order + ref.storage_type.dtype)
    if len(data) < ref.numel * dtype.itemsize:
        raise errors.InvalidInputError(
                f"{path}: storage {ref.key} holds {len(data)} bytes, {ref.numel} elements of "
                f"{dtype.itemsize} bytes expected (truncated file)")
    return np.frombuffer(data, dtype, count=ref.numel)


def _storage_refs(state) -> Dict[str, _StorageRef]:
    return {value.storage.key: value.storage for value in state.values()
            if isinstance(value, _TensorRef)}


def _load_zip(archive: zipfile.ZipFile, path: str):
    pickles = [name for name in archive.namelist() if name.endswith("data.pkl")
               and name.count("/") == 1]
    if len(pickles) != 1:
        raise errors.InvalidInputError(f"{path}: a zip file but not a PyTorch checkpoint "
                                       f"(expected one <name>/data.pkl, found {len(pickles)})")
    prefix = pickles[0][:-len("data.pkl")]
    byte_order = "<"
    if prefix + "byteorder" in archive.namelist():
        byte_order = ">" if archive.read(prefix + "byteorder").strip() == b"big" else "<"
    state = _unpickle(io.BytesIO(archive.read(pickles[0])), path)
    if not isinstance(state, dict):
        return state, {}
    storages = {}
    for key, ref in _storage_refs(state).items():
        member = f"{prefix}data/{key}"
        if member not in archive.namelist():
            raise errors.InvalidInputError(f"{path}: storage {member} is missing (truncated "
                                           "or damaged file)")
        storages[key] = _storage_array(archive.read(member), ref, byte_order, path)
    return state, storages


def _load_legacy(file, path: str):
    start = file.read(4)
    if start == b"PK\x03\x04":  # A zip's first entry, but no readable archive.
        raise errors.InvalidInputError(f"{path}: a truncated or damaged zip archive (no "
                                       "central directory)")
    if start[:2] != b"\x80\x02":  # The legacy format opens with a protocol-2 pickle.
        raise errors.InvalidInputError(f"{path}: not a PyTorch file (neither torch.save's zip "
                                       "archive nor its legacy format)")
    file.seek(0)
    header = [_unpickle(file, path) for _ in range(3)]
    if header[0] != _LEGACY_MAGIC or header[1] != _LEGACY_PROTOCOL:
        raise errors.InvalidInputError(f"{path}: not a PyTorch file (no zip archive and no "
                                       "legacy torch.save header)")
    byte_order = "<" if not isinstance(header[2], dict) or header[2].get(
            "little_endian", True) else ">"
    state = _unpickle(file, path)
    keys = _unpickle(file, path)
    refs = _storage_refs(state) if isinstance(state, dict) else {}
    storages = {}
    for key in keys if isinstance(keys, list) else []:
        count = file.read(8)
        if len(count) < 8:
            raise errors.InvalidInputError(f"{path}: ends before storage {key} (truncated file)")
        numel = struct.unpack(byte_order + "q", count)[0]
        ref = refs.get(str(key))
        if ref is None:  # Its element size, so where the next storage starts, is unknown.
            raise errors.InvalidInputError(f"{path}: storage {key} is not referenced by any "
                                           "tensor of the state dict")
        itemsize = np.dtype(ref.storage_type.dtype).itemsize
        storages[str(key)] = _storage_array(file.read(numel * itemsize),
                                            dataclasses.replace(ref, numel=numel),
                                            byte_order, path)
    return state, storages


def load_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
    """The tensors of a PyTorch state dict file as NumPy arrays, in the file's order.

    Args:
      path: a file written by `torch.save(state_dict, path)`, either format.

    Returns:
      OrderedDict {parameter name: np.ndarray in native byte order}.

    Raises:
      MissingInputError: no such file.
      InvalidInputError: not a PyTorch file, a pickle naming anything but tensors, a
        value that is not a tensor, or a truncated or damaged file.
    """
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise errors.MissingInputError(f"--weights={path} does not exist") from None
    with file:
        if zipfile.is_zipfile(file):
            file.seek(0)
            try:
                with zipfile.ZipFile(file) as archive:
                    state, storages = _load_zip(archive, path)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
                raise errors.InvalidInputError(f"{path}: damaged zip archive: "
                                               f"{errors.one_line(error)}") from None
        else:
            file.seek(0)
            state, storages = _load_legacy(file, path)
    if not isinstance(state, dict):
        raise errors.InvalidInputError(f"{path}: holds a {type(state).__name__}, not a state "
                                       "dict of tensors")
    arrays = collections.OrderedDict()
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise errors.InvalidInputError(f"{path}: entry {name!r} is a "
                                           f"{type(value).__name__}, not a tensor")
        if value.storage.key not in storages:
            raise errors.InvalidInputError(f"{path}: the bytes of tensor {name!r} are missing "
                                           "(truncated file)")
        arrays[str(name)] = _tensor_array(value, storages, name, path)
    return arrays

