"""Reads and writes safetensors files with torch and numpy only (Debian 12 packages no `safetensors`).

The format: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
{str: str}}, then the raw little-endian data. Written by ResNetGen's sample (export --pytorch).

    import safetensors_io
    state = safetensors_io.load('weights.safetensors')           # {name: tensor}
    meta = safetensors_io.metadata('weights.safetensors')       # {'classes': '[...]', 'preprocess': '...', ...}
    safetensors_io.save('out.safetensors', net.state_dict(), meta)
"""
import json

import numpy as np
import torch

_NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "I16": np.int16,
          "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.int64: "I64", torch.int32: "I32",
          torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def _header(data, path):
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError(f"{path}: not a safetensors file (its header length {n} runs past the end)")
    return json.loads(data[8:8 + n].decode("utf-8")), 8 + n


def load(path):
    """Every tensor of the file, by name, on the CPU."""
    with open(path, "rb") as f:
        data = f.read()
    header, base = _header(data, path)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _NUMPY.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: {name} has dtype {info['dtype']}, which this reader does not know")
        start, end = info["data_offsets"]
        array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=(end - start) // np.dtype(dtype).itemsize, offset=base + start)
        tensors[name] = torch.from_numpy(array.reshape(info["shape"]).astype(dtype))
    return tensors


def metadata(path):
    """The file's string metadata (empty if none)."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little")
        header = json.loads(f.read(n).decode("utf-8"))
    return dict(header.get("__metadata__", {}))


def save(path, tensors, meta=None):
    """Writes tensors (name -> tensor, contiguous CPU copies are made) and string metadata, to a temporary file first."""
    header, blobs, offset = {}, [], 0
    if meta:
        header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    for name, tensor in tensors.items():
        t = tensor.detach().cpu().contiguous()
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    temporary = path + ".partial"
    with open(temporary, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    import os
    os.replace(temporary, path)
