"""The safetensors format, read and written one tensor at a time.

Why not the `safetensors` package: its writer needs every tensor of a file in memory at once, and
its reader memory-maps the whole file, so every page read stays in the process's resident set
until the file is closed. Reading each tensor with one `readinto` and writing each as it arrives
keeps host memory at about one tensor. The tests check both directions against the package.

Layout: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}
(plus an optional "__metadata__" map), then the tensors' bytes back to back; offsets count from
the end of the header.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import ml_dtypes
import numpy as np

from ports import CheckpointError

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
FLOAT_DTYPES = frozenset(np.dtype(DTYPES[k]) for k in ("F64", "F32", "F16", "BF16"))
_CODES = {np.dtype(v): k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # the safetensors package refuses larger headers too


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int = 0  # where the bytes start in the file; set by read_header

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """Tensor name -> TensorInfo, after checking the header describes a complete, consistent file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little") if size >= 8 else 0
            if not 0 < n <= min(_MAX_HEADER, size - 8):
                raise CheckpointError(f"{path}: not a safetensors file (header length {n}, file size {size})")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    base, end, tensors = 8 + n, 0, {}
    for name, entry in header.items():
        try:
            code = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            begin, stop = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if code not in DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {code!r}")
        info = TensorInfo(name, np.dtype(DTYPES[code]), shape, base + begin)
        if begin < 0 or stop - begin != info.nbytes:
            raise CheckpointError(f"{path}: tensor {name!r} spans {stop - begin} bytes, "
                                  f"but shape {list(shape)} {code} needs {info.nbytes}")
        end = max(end, stop)
        tensors[name] = info
    if base + end > size:
        raise CheckpointError(f"{path}: truncated: the header describes {base + end} bytes, the file has {size}")
    return tensors


def read_tensor(file: BinaryIO, info: TensorInfo) -> np.ndarray:
    """One tensor from an open file, read straight into a fresh array (no memory map)."""
    buf = np.empty(info.nbytes, np.uint8)
    file.seek(info.offset)
    if file.readinto(buf) != info.nbytes:
        raise CheckpointError(f"{file.name}: truncated while reading tensor {info.name!r}")
    return buf.view(info.dtype).reshape(info.shape)


def dtype_code(dtype) -> str:
    try:
        return _CODES[np.dtype(dtype)]
    except KeyError:
        raise CheckpointError(f"dtype {np.dtype(dtype)} cannot be stored in safetensors") from None


def write_file(path: str | Path, infos: Sequence[TensorInfo], tensors: Iterator[tuple[str, np.ndarray]],
               metadata: dict[str, str] | None = None) -> None:
    """Writes the tensors `infos` describes, taking them one by one from `tensors` (which must yield
    exactly those names, shapes and dtypes, in that order)."""
    header: dict = {"__metadata__": {"format": "pt"} if metadata is None else metadata}
    offset = 0
    for info in infos:
        header[info.name] = {"dtype": dtype_code(info.dtype), "shape": list(info.shape),
                             "data_offsets": [offset, offset + info.nbytes]}
        offset += info.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # tensor data 8-byte aligned, as the safetensors package writes it
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for info in infos:
            try:
                name, array = next(tensors)
            except StopIteration:
                raise CheckpointError(f"{path}: tensors ran out before {info.name!r}") from None
            if (name, array.shape, array.dtype) != (info.name, info.shape, info.dtype):
                raise CheckpointError(f"{path}: expected tensor {info.name!r} {list(info.shape)} {info.dtype}, "
                                      f"got {name!r} {list(array.shape)} {array.dtype}")
            f.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        f.flush()
        os.fsync(f.fileno())  # the folder is renamed into place next: its files must be on disk first
