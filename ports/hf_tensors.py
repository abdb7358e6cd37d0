"""Flax parameters -> (HF tensor name, array in torch layout), one tensor at a time.

Two forms of the same walk: `hf_device_tensors` keeps each tensor on a device (what the vLLM
weight sync hands over through DLPack, with no host copy), `hf_tensors` brings it to the host
(what the HF exporter and the folder sync write). Tied models yield no lm_head.weight unless asked
(the model has no such parameter).

Casts and transposes run on the device, where the weights live, in one jitted op per tensor, so
only the compute-dtype result moves. Arrays that need neither are passed through as they are:
zero-copy views of the parameter buffers. Consume each one before a step that donates the
parameters' buffers. bfloat16 host arrays come out as ml_dtypes.bfloat16.
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


def _repeats_as_lm_head(path: tuple, tree: dict, tied_lm_head: bool) -> bool:
    """Whether the embedding at `path` goes out a second time as lm_head.weight: asked for, and the
    model ties its head. vLLM 0.32's `reload_weights` needs it: its layer-wise reload puts the old
    head back when no lm_head.weight arrives, silently untying it (tests/test_ports_vllm.py)."""
    return tied_lm_head and path == ("embed_tokens",) and "lm_head" not in tree


def _in_torch_layout(model_or_params, dtype, tied_lm_head: bool):
    """(HF name, array cast and transposed where it lives), in the tree's canonical order."""
    tree = param_tree(model_or_params)
    leaves, _ = flat_params(tree)
    for path, x in leaves:
        name, transposed = hf_name(path)
        out = np.dtype(x.dtype if dtype is None else dtype)
        if transposed or out != x.dtype:
            x = _torch_layout(x, transposed, out)
        yield name, x
        if _repeats_as_lm_head(path, tree, tied_lm_head):
            yield "lm_head.weight", x


def hf_tensors(model_or_params, *, dtype=None, tied_lm_head: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """Lazily yields every parameter under its HF name as a host array, cast to `dtype` (None: as
    stored). tied_lm_head: for a tied model, also yield lm_head.weight (the embedding again)."""
    for name, x in _in_torch_layout(model_or_params, dtype, tied_lm_head):
        yield name, np.asarray(x)


def hf_device_tensors(model_or_params, *, dtype=None, tied_lm_head: bool = False) -> Iterator[tuple[str, jax.Array]]:
    """As `hf_tensors`, but each tensor stays on a device: a whole (unsharded) jax.Array on the
    first device of the parameter's sharding, ready for `torch.from_dlpack`. A sharded parameter is
    cast first and gathered after, so only compute-dtype bytes move."""
    for name, x in _in_torch_layout(model_or_params, dtype, tied_lm_head):
        first = min(x.sharding.device_set, key=lambda d: d.id)
        yield name, jax.block_until_ready(jax.device_put(x, first))


def hf_tensor_infos(model_or_params, *, dtype=None, tied_lm_head: bool = False) -> list[TensorInfo]:
    """Name, shape and dtype of what hf_tensors yields, in the same order, without moving any data."""
    tree = param_tree(model_or_params)
    leaves, _ = flat_params(tree)
    infos = []
    for path, x in leaves:
        name, transposed = hf_name(path)
        info = TensorInfo(name, np.dtype(x.dtype if dtype is None else dtype),
                          tuple(x.shape[::-1] if transposed else x.shape))
        infos.append(info)
        if _repeats_as_lm_head(path, tree, tied_lm_head):
            infos.append(TensorInfo("lm_head.weight", info.dtype, info.shape))
    return infos
