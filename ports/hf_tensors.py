"""Flax parameters -> (HF tensor name, host numpy array in torch layout), one tensor at a time.

This is what the vLLM weight sync feeds to `reload_weights(weights_iterator=...)` and what the HF
exporter writes. Tied models yield no lm_head.weight (the model has no such parameter).

Arrays that need neither a transpose nor a cast are zero-copy, read-only views of the device
buffer on CPU: consume each one before a step that donates the parameters' buffers. The rest are
transposed and cast on the device in one jitted op, so only the result crosses to the host.
bfloat16 arrays come out as ml_dtypes.bfloat16; torch takes them through a uint16 view.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import numpy as np

from ports.params import flat_params, param_tree
from ports.qwen2_names import hf_name
from ports.safetensors_file import TensorInfo


@functools.partial(jax.jit, static_argnames=("transpose", "dtype"))
def _torch_layout(x, transpose: bool, dtype):
    return (x.T if transpose else x).astype(dtype)


def hf_tensors(model_or_params, *, dtype=None, tied_lm_head: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """Lazily yields every parameter under its HF name, cast to `dtype` (None: as stored).

    tied_lm_head: for a tied model, also yield lm_head.weight (the embedding array itself, no
    copy). vLLM 0.32's `reload_weights` needs it: its layer-wise reload puts the old head back
    when no lm_head.weight arrives, silently untying it (tests/test_ports_vllm.py shows both)."""
    tree = param_tree(model_or_params)
    leaves, _ = flat_params(tree)
    for path, x in leaves:
        name, transposed = hf_name(path)
        out = np.dtype(x.dtype if dtype is None else dtype)
        if transposed or out != x.dtype:
            x = _torch_layout(x, transposed, out)
        host = np.asarray(x)
        yield name, host
        if tied_lm_head and path == ("embed_tokens",) and "lm_head" not in tree:
            yield "lm_head.weight", host


def hf_tensor_infos(model_or_params, *, dtype=None) -> list[TensorInfo]:
    """Name, shape and dtype of what hf_tensors yields, in the same order, without moving any data."""
    leaves, _ = flat_params(param_tree(model_or_params))
    infos = []
    for path, x in leaves:
        name, transposed = hf_name(path)
        shape = tuple(x.shape[::-1] if transposed else x.shape)
        infos.append(TensorInfo(name, np.dtype(x.dtype if dtype is None else dtype), shape))
    return infos
