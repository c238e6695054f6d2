"""Read the tensors of a legacy PyTorch file (``torch.save`` before 1.6) with numpy alone, no PyTorch.

That format is five pickles in a row (magic number, protocol version, system info, the object with
storages as persistent ids, the storage keys in file order) followed by each storage's raw bytes,
each preceded by its element count (int64). A restricted unpickler rebuilds only what a state dict
holds (an OrderedDict of tensors): any other class in the file is refused, so no code runs.
"""

from __future__ import annotations

import collections
import pickle
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """The file is not a legacy PyTorch file of tensors this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    key: str
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], storages: dict[str, tuple[type, int]]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise TorchFileError(f"holds a {module}.{name}, not just tensors")

    def persistent_load(self, pid: Any) -> str:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise TorchFileError(f"unknown persistent id {str(pid)[:60]}")
        _, storage_type, key, _location, numel, view = pid
        if view is not None or not isinstance(storage_type, _StorageType):
            raise TorchFileError("uses storage views, which this reader does not support")
        self.storages[key] = (storage_type.dtype, int(numel))
        return key


def _rebuild_tensor(key: str, offset: int, shape: tuple, stride: tuple, *_: Any) -> _TensorRef:
    return _TensorRef(key, int(offset), tuple(shape), tuple(stride))


def read_torch_legacy(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy ``torch.save`` state dict, by name, as numpy arrays (copies).

    Raises :class:`TorchFileError` for anything else, with what the file seems to be.
    """
    if zipfile.is_zipfile(path):
        raise TorchFileError("a zip file (torch.save of PyTorch 1.6 or later), not the legacy format")
    if tarfile.is_tarfile(path):
        raise TorchFileError("a tar file (torch.save of PyTorch before 0.4), not the zip-less legacy format")
    storages: dict[str, tuple[type, int]] = {}
    with open(path, "rb") as f:
        try:
            if _Unpickler(f, storages).load() != MAGIC_NUMBER:
                raise TorchFileError("not a legacy PyTorch file (no torch.save magic number)")
            if _Unpickler(f, storages).load() != PROTOCOL_VERSION:
                raise TorchFileError("an unknown torch.save protocol version")
            sys_info = _Unpickler(f, storages).load()
            state = _Unpickler(f, storages).load()
            keys = _Unpickler(f, storages).load()
            if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
                raise TorchFileError("not little-endian, which this reader does not support")
            if not isinstance(state, dict) or not all(isinstance(v, _TensorRef) for v in state.values()):
                raise TorchFileError("does not hold a state dict of tensors")
            data = {key: _read_storage(f, key, *storages[key]) for key in keys}
            return {name: _view(ref, data[ref.key]) for name, ref in state.items()}
        except TorchFileError:
            raise
        except Exception as exc:  # a damaged pickle can fail in many ways; the user needs one line
            raise TorchFileError(f"not a readable legacy PyTorch file ({type(exc).__name__}: {exc})") from exc


def _read_storage(f: IO[bytes], key: str, dtype: type, numel: int) -> np.ndarray:
    header = f.read(8)
    if len(header) < 8 or struct.unpack("<q", header)[0] != numel:
        raise TorchFileError(f"storage {key} is truncated or out of place")
    dtype = np.dtype(dtype).newbyteorder("<")
    raw = f.read(numel * dtype.itemsize)
    if len(raw) != numel * dtype.itemsize:
        raise TorchFileError(f"storage {key} is truncated")
    return np.frombuffer(raw, dtype=dtype)


def _view(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    """The tensor as PyTorch sees it: shape and strides (in elements) over its storage."""
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True))
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or (all(ref.shape) and last >= storage.size):
        raise TorchFileError(f"a tensor reaches past the end of storage {ref.key}")
    strides = tuple(s * storage.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(storage[ref.offset :], shape=ref.shape, strides=strides)
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")  # a native-order, C-order copy
