"""Hugging Face Qwen2 folder (safetensors) -> Flax model, tensor by tensor, each placed straight
into its target sharding."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from safetensors import safe_open

from jgrpo.model import DtypePolicy, Qwen2Config, Qwen2ForCausalLM, make_mesh, state_shardings
from ports.qwen2_names import hf_name


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, corrupt or inconsistent with its config."""


def safetensors_files(folder: Path) -> dict[str, Path]:
    """HF tensor name -> the safetensors file that holds it (single file or sharded with an index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise CheckpointError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    try:
        with safe_open(single, framework="numpy") as f:
            return {name: single for name in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a truncated header
        raise CheckpointError(f"{single}: cannot read safetensors header ({e})") from None


def _paths(state) -> list[tuple]:
    leaves = jax.tree_util.tree_leaves_with_path(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return [tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path) for path, _ in leaves]


def load_hf_model(folder: str | Path, *, policy: DtypePolicy = DtypePolicy(), mesh=None,
                  remat: bool = False) -> Qwen2ForCausalLM:
    """Loads a HF Qwen2 folder. Peak host memory is about one tensor beyond what is already placed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    cfg = Qwen2Config.from_json_file(folder / "config.json")
    mesh = mesh if mesh is not None else make_mesh(devices=jax.devices()[:1])
    files = safetensors_files(folder)
    abstract = nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, policy=policy, remat=remat, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh)
    expected = {hf_name(p)[0] for p in _paths(abstract_state)}
    if cfg.tie_word_embeddings:
        files.pop("lm_head.weight", None)  # some exports write the tied head anyway
    unknown = sorted(set(files) - expected)
    if unknown:
        raise CheckpointError(f"{folder}: unexpected tensor {unknown[0]!r} (not part of this Qwen2 config)")
    missing = sorted(expected - set(files))
    if missing:
        raise CheckpointError(f"{folder}: missing tensor {missing[0]!r}")

    handles: dict[Path, object] = {}

    def read(name: str) -> np.ndarray:
        file = files[name]
        if file not in handles:
            try:
                handles[file] = safe_open(file, framework="numpy")
            except Exception as e:
                raise CheckpointError(f"{file}: cannot open safetensors file ({e})") from None
        try:
            return handles[file].get_tensor(name)
        except Exception as e:
            raise CheckpointError(f"{file}: cannot read tensor {name!r} ({e})") from None

    def place(path, variable, sharding):
        name, transposed = hf_name(path)
        host = read(name)
        if transposed:
            host = host.T
        if host.shape != variable.shape:
            raise CheckpointError(f"{folder}: tensor {name!r} has shape {tuple(host.shape)}, "
                                  f"config expects {tuple(variable.shape)}")
        host = np.ascontiguousarray(host.astype(variable.dtype, copy=False))
        return variable.replace(jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx]))

    state = jax.tree_util.tree_map_with_path(
        lambda path, v, s: place(tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path), v, s),
        abstract_state, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, state)
