"""A model's parameters as a plain nested dict: {"embed_tokens": x, "layers": {0: {"mlp": ...}}}.

The bridges read, write and checkpoint this form rather than nnx's State classes, so a checkpoint
does not depend on how nnx spells its containers; `model_from_params` turns it back into a model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgrpo.model import DtypePolicy, Qwen2Config, Qwen2ForCausalLM, make_mesh, state_shardings
from ports import CheckpointError
from ports.qwen2_names import hf_name


def param_tree(model_or_params) -> dict:
    """The parameters of a model, of an nnx State of parameters, or a nested dict given as is."""
    if isinstance(model_or_params, nnx.Module):
        return nnx.to_pure_dict(nnx.state(model_or_params, nnx.Param))
    if isinstance(model_or_params, nnx.State):
        return nnx.to_pure_dict(model_or_params)
    return model_or_params


def flat_params(tree) -> tuple[list[tuple[tuple, object]], object]:
    """([(path as a tuple of plain keys, leaf)], treedef), in the tree's canonical order."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path), leaf) for path, leaf in leaves], treedef


def tree_dtype(tree) -> np.dtype:
    """The one dtype all leaves share; an error if they differ (a HF config states a single dtype)."""
    dtypes = {np.dtype(leaf.dtype) for leaf in jax.tree.leaves(tree)}
    if len(dtypes) != 1:
        raise CheckpointError(f"parameters have mixed dtypes {sorted(d.name for d in dtypes)}; choose one dtype")
    return dtypes.pop()


def check_params(tree, cfg: Qwen2Config) -> None:
    """Raises CheckpointError naming the first tensor missing, unknown or misshapen for `cfg`."""
    expected = dict(flat_params(abstract_params(cfg))[0])
    given = dict(flat_params(tree)[0])
    for path, x in given.items():
        if path not in expected:
            raise CheckpointError(f"parameter {'.'.join(map(str, path))!r} is not part of this {cfg.model_type} config")
        if tuple(x.shape) != expected[path].shape:
            raise CheckpointError(f"tensor {hf_name(path)[0]!r} has shape {list(x.shape)} (Flax layout), "
                                  f"the config implies {list(expected[path].shape)}")
    missing = sorted(hf_name(p)[0] for p in set(expected) - set(given))
    if missing:
        raise CheckpointError(f"missing tensor {missing[0]!r} for this {cfg.model_type} config")


def _abstract_model(cfg: Qwen2Config, policy: DtypePolicy, remat: bool = False, attention: str = "auto"):
    return nnx.split(nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, policy=policy, remat=remat, attention=attention,
                                                             rngs=nnx.Rngs(0))))


def abstract_params(cfg: Qwen2Config, *, mesh=None, dtype=jnp.float32) -> dict:
    """ShapeDtypeStructs carrying the sharding table's placement on `mesh` (default: one device)."""
    mesh = mesh if mesh is not None else make_mesh(devices=jax.devices()[:1])
    _, state = _abstract_model(cfg, DtypePolicy(param_dtype=dtype))
    shapes, shardings = nnx.to_pure_dict(state), nnx.to_pure_dict(state_shardings(state, mesh))
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, shardings)


def model_from_params(cfg: Qwen2Config, params: dict, *, policy: DtypePolicy = DtypePolicy(),
                      remat: bool = False, attention: str = "auto") -> Qwen2ForCausalLM:
    """A model around existing arrays (no copy): their shardings are kept as they are."""
    graphdef, state = _abstract_model(cfg, policy, remat, attention)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)
