"""Hugging Face folder of a supported family (Qwen2, Qwen3, Llama; single model.safetensors, or shards listed in
model.safetensors.index.json) -> Flax parameters, tensor by tensor, each placed straight into its
target sharding: host memory peaks at about one tensor beyond what is already placed.

Everything that can be checked from headers (names, shapes, dtypes, file sizes) is checked before
the first tensor is read, so a bad checkpoint fails fast and names the tensor or file at fault.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jgrpo.model import DtypePolicy, Qwen2Config, Qwen2ForCausalLM
from ports import CheckpointError
from ports.params import abstract_params, flat_params, model_from_params
from ports.qwen2_names import hf_name
from ports.safetensors_file import FLOAT_DTYPES, TensorInfo, read_header, read_tensor

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

Progress = Callable[[str, int], None]  # called with (HF tensor name, bytes) after each tensor


def checkpoint_tensors(folder: Path) -> dict[str, tuple[Path, TensorInfo]]:
    """HF tensor name -> (file, header entry), for a single file or a sharded checkpoint."""
    index = folder / INDEX_FILE
    if not index.is_file():
        single = folder / SINGLE_FILE
        if not single.is_file():
            raise CheckpointError(f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}")
        return {name: (single, info) for name, info in read_header(single).items()}
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index}: not a valid safetensors index ({e!r})") from None
    found: dict[str, tuple[Path, TensorInfo]] = {}
    for file in files:
        if not isinstance(file, str) or Path(file).name != file:
            raise CheckpointError(f"{index}: {file!r} is not a file name in this folder")
        for name, info in read_header(folder / file).items():
            if name in found:
                raise CheckpointError(f"{folder}: tensor {name!r} is in both {found[name][0].name} and {file}")
            found[name] = (folder / file, info)
    for name, file in weight_map.items():
        if name not in found or found[name][0].name != file:
            raise CheckpointError(f"{index}: tensor {name!r} is not in {file}")
    unlisted = sorted(set(found) - set(weight_map))
    if unlisted:
        raise CheckpointError(f"{index}: does not list tensor {unlisted[0]!r} (found in {found[unlisted[0]][0].name})")
    return found


def load_hf_params(folder: str | Path, *, dtype=None, mesh=None,
                   progress: Progress | None = None) -> tuple[Qwen2Config, dict]:
    """(config, parameter dict) from a HF folder. dtype None keeps each tensor's stored dtype."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    cfg = Qwen2Config.from_json_file(folder / "config.json")
    tensors = checkpoint_tensors(folder)
    if cfg.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)  # some exports write the tied head anyway
    targets, treedef = flat_params(abstract_params(cfg, mesh=mesh))
    plan = [(hf_name(path), target) for path, target in targets]
    expected = {name for (name, _), _ in plan}
    unknown = sorted(set(tensors) - expected)
    if unknown:
        raise CheckpointError(f"{tensors[unknown[0]][0]}: unexpected tensor {unknown[0]!r} "
                              f"(not part of this {cfg.model_type} config)")
    missing = sorted(expected - set(tensors))
    if missing:
        raise CheckpointError(f"{folder}: missing tensor {missing[0]!r}")
    for (name, transposed), target in plan:
        file, info = tensors[name]
        want = target.shape[::-1] if transposed else target.shape
        if info.shape != want:
            raise CheckpointError(f"{file}: tensor {name!r} has shape {list(info.shape)}, "
                                  f"config.json implies {list(want)}")
        if info.dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{file}: tensor {name!r} has dtype {info.dtype}, expected a float type")

    placed = []
    with contextlib.ExitStack() as files:
        handles: dict[Path, object] = {}
        for (name, transposed), target in plan:
            file, info = tensors[name]
            if file not in handles:
                handles[file] = files.enter_context(open(file, "rb"))
            host = read_tensor(handles[file], info)
            # The transpose stays a view: device_put makes the one contiguous copy it needs anyway.
            host = host.T if transposed else host
            host = host if dtype is None else host.astype(dtype, copy=False)
            placed.append(jax.make_array_from_callback(target.shape, target.sharding, lambda idx, h=host: h[idx]))
            del host
            if progress is not None:
                progress(name, info.nbytes)
    return cfg, jax.tree_util.tree_unflatten(treedef, placed)


def load_hf_model(folder: str | Path, *, policy: DtypePolicy = DtypePolicy(), mesh=None,
                  remat: bool = False, attention: str = "auto") -> Qwen2ForCausalLM:
    """A HF folder (Qwen2, Qwen3 or Llama) as a model whose parameters are in `policy.param_dtype`, sharded on `mesh`
    (default: one device). attention: "auto" | "einsum" | "fused" (`jgrpo.model.attention`)."""
    cfg, params = load_hf_params(folder, dtype=np.dtype(policy.param_dtype), mesh=mesh)
    return model_from_params(cfg, params, policy=policy, remat=remat, attention=attention)
