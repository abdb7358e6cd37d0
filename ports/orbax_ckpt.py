"""Orbax checkpoints of named pytrees of arrays plus one JSON metadata item, restorable onto any
mesh or sharding.

A checkpoint is an Orbax Composite: one StandardSave item per named tree ("params", "opt_state",
...) and a JSON item "meta". `save_args` / `restore_args` / `handler_registry` plug into a
CheckpointManager (the trainer); `save` / `restore` do the same for one standalone folder (tools,
conversion). `save_params` / `restore_params` are the model's case: item "params" plus the HF config
in meta["hf_config"], so a checkpoint can be turned back into a HF folder on its own.
`restore_params` also reads the parameters out of a training checkpoint (jgrpo.checkpoint: item
"state", a TrainState whose "params" subtree it restores alone, leaving the optimizer state on disk).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jgrpo.hub import first_line
from jgrpo.model import Qwen2Config
from ports import CheckpointError
from ports.atomic import atomic_dir
from ports.params import abstract_params, check_params, param_tree, tree_dtype

META = "meta"
PARAMS = "params"


def handler_registry(tree_names) -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    """Tells Orbax each item's type up front, so reading metadata needs no restore args.

    Trees are written one zarr array per leaf rather than in Orbax's default OCDBT store: saving
    the 1.5B model (3.6 GB bf16) from CPU arrays, OCDBT with compression peaked at 2.4 GB above the
    arrays themselves and took 2.5x longer (scripts/bench_convert.py). Restore reads either format."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for name in tree_names:
        handler = ocp.StandardCheckpointHandler(use_ocdbt=False)
        registry.add(name, ocp.args.StandardSave, handler)
        registry.add(name, ocp.args.StandardRestore, handler)
    registry.add(META, ocp.args.JsonSave, ocp.JsonCheckpointHandler())
    registry.add(META, ocp.args.JsonRestore, ocp.JsonCheckpointHandler())
    return registry


def save_args(trees: Mapping[str, Any], meta: dict | None = None) -> ocp.args.Composite:
    if META in trees:
        raise ValueError(f"{META!r} is reserved for the JSON metadata item")
    items = {name: ocp.args.StandardSave(tree) for name, tree in trees.items()}
    return ocp.args.Composite(**items, **{META: ocp.args.JsonSave(meta or {})})


def restore_args(targets: Mapping[str, Any]) -> ocp.args.Composite:
    """targets: per item, a tree of jax.ShapeDtypeStruct whose shardings say where each leaf goes."""
    items = {name: ocp.args.StandardRestore(target) for name, target in targets.items()}
    return ocp.args.Composite(**items, **{META: ocp.args.JsonRestore()})


def abstract(tree, shardings=None):
    """A restore target: the tree's shapes and dtypes, placed by `shardings` (one sharding or a
    matching tree of them) or, when None, where the tree's own arrays are."""
    if shardings is None:
        shardings = jax.tree.map(lambda x: x.sharding, tree)
    elif isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _, s=shardings: s, tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _key(path) -> str:
    """"layers.0.mlp.up_proj.kernel": how Orbax names a leaf, whatever container types hold it."""
    return jax.tree_util.keystr(path, simple=True, separator=".")


def _checkpointer(tree_names) -> ocp.Checkpointer:
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler(handler_registry=handler_registry(tree_names)))


def save(path: str | Path, trees: Mapping[str, Any], meta: dict | None = None, *, overwrite: bool = False) -> None:
    """One standalone checkpoint folder, written under a temporary name and renamed into place
    (single process; under multi-host JAX use a CheckpointManager with save_args)."""
    with atomic_dir(path, overwrite=overwrite) as tmp:
        with _checkpointer(trees) as ckpt:
            ckpt.save(tmp, save_args(trees, meta))


def _existing(path: str | Path) -> Path:
    path = Path(path).absolute()  # Orbax refuses relative paths
    if not (path / META).is_dir():
        raise CheckpointError(f"no Orbax checkpoint with a {META!r} item at {path}")
    return path


def read_meta(path: str | Path) -> dict:
    with _checkpointer(()) as ckpt:
        return ckpt.restore(_existing(path), ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]


def stored_arrays(path: str | Path, name: str) -> dict[str, Any]:
    """Dotted leaf path -> Orbax's ArrayMetadata (shape, dtype) for one tree item, read without data."""
    path = _existing(path)
    if not (path / name).is_dir():
        raise CheckpointError(f"{path}: no item {name!r} in this checkpoint")
    with _checkpointer([name]) as ckpt:
        tree = ckpt.metadata(path).item_metadata[name]
    return {_key(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_target(path: Path, name: str, target) -> None:
    stored = stored_arrays(path, name)
    wanted = {_key(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(target)[0]}
    for key, leaf in wanted.items():
        if key not in stored:
            raise CheckpointError(f"{path / name}: no array {key!r} in the checkpoint")
        if tuple(stored[key].shape) != tuple(leaf.shape):
            raise CheckpointError(f"{path / name}: {key!r} has shape {list(stored[key].shape)} in the checkpoint, "
                                  f"expected {list(leaf.shape)}")
    extra = sorted(set(stored) - set(wanted))
    if extra:
        raise CheckpointError(f"{path / name}: the checkpoint has {extra[0]!r}, which the target lacks")


def restore(path: str | Path, targets: Mapping[str, Any]) -> tuple[dict[str, Any], dict]:
    """({item: tree}, meta); each tree is placed as its target says (see `abstract`). Leaves whose
    target dtype differs from the stored one are cast."""
    path = _existing(path)
    for name, target in targets.items():
        _check_target(path, name, target)
    try:
        with _checkpointer(targets) as ckpt:
            out = ckpt.restore(path, restore_args(targets))
    except Exception as e:  # Orbax and TensorStore raise many types; the caller needs which file failed
        raise CheckpointError(f"{path}: cannot restore ({type(e).__name__}: {first_line(e)})") from e
    return {name: out[name] for name in targets}, out[META]


def save_params(path: str | Path, model_or_params, cfg: Qwen2Config, *, meta: dict | None = None,
                overwrite: bool = False) -> None:
    """A model parameter checkpoint: item "params", and the HF config in meta["hf_config"]."""
    params = param_tree(model_or_params)
    check_params(params, cfg)
    hf_config = cfg.to_hf_dict(torch_dtype=tree_dtype(params).name)
    save(path, {PARAMS: params}, {**(meta or {}), "hf_config": hf_config}, overwrite=overwrite)


def params_location(path: str | Path) -> tuple[str, str]:
    """(item, prefix): where a checkpoint keeps the model's parameters. A parameter checkpoint has
    them as item "params" (prefix ""); a training checkpoint as the "params" subtree of a tree item
    (jgrpo.checkpoint's "state", prefix "params.")."""
    path = _existing(path)
    if (path / PARAMS).is_dir():
        return PARAMS, ""
    items = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name != META and not p.name.startswith("."))
    for item in items:
        try:
            keys = stored_arrays(path, item)
        except Exception:  # not a tree item Orbax can describe: keep looking
            continue
        if any(k.startswith(PARAMS + ".") for k in keys):
            return item, PARAMS + "."
    raise CheckpointError(f"{path}: no parameters in this checkpoint (no item {PARAMS!r}, and no item holding "
                          f"a {PARAMS!r} tree; items: {', '.join(items) or 'none'})")


def _partial_target(path: Path, item: str, prefix: str, wanted: dict) -> tuple[dict, dict]:
    """The restore target for the parameter leaves of a tree item, each in its stored dtype, and
    the map from its dotted key back to the parameter's. nnx spells a Variable's array as a
    trailing ".value" leaf; both spellings are accepted."""
    stored = stored_arrays(path, item)
    target, back = {}, {}
    for key, leaf in wanted.items():
        for name in (prefix + key, prefix + key + ".value"):
            if name in stored:
                break
        else:
            raise CheckpointError(f"{path / item}: no array {prefix + key!r} in the checkpoint")
        if tuple(stored[name].shape) != tuple(leaf.shape):
            raise CheckpointError(f"{path / item}: {name!r} has shape {list(stored[name].shape)} in the checkpoint, "
                                  f"the config implies {list(leaf.shape)}")
        target[name] = jax.ShapeDtypeStruct(leaf.shape, stored[name].dtype, sharding=leaf.sharding)
        back[name] = key
    ours = {n[: -len(".value")] if n.endswith(".value") else n for n in target}
    extra = sorted(k for k in stored if k.startswith(prefix)
                   and (k[: -len(".value")] if k.endswith(".value") else k) not in ours)
    if extra:
        raise CheckpointError(f"{path / item}: the checkpoint has {extra[0]!r}, which this model's config lacks")
    return target, back


def _nest(flat: dict[str, Any]) -> dict:
    """{"a.0.b": x} -> {"a": {0: {"b": x}}}: integer segments become int keys, as in Orbax's trees."""
    out: dict = {}
    for key, value in flat.items():
        parts = [int(p) if p.isdigit() else p for p in key.split(".")]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _restore_subtree(path: Path, item: str, prefix: str, abstract_tree) -> dict:
    """Restores only the leaves of `abstract_tree` found under `prefix` in `item` (Orbax partial
    restore: the item's other arrays, e.g. AdamW moments, are never read)."""
    wanted = {_key(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(abstract_tree)[0]}
    target_flat, back = _partial_target(path, item, prefix, wanted)
    target = _nest(target_flat)
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add(item, ocp.args.PyTreeRestore, ocp.PyTreeCheckpointHandler(use_ocdbt=False))
    registry.add(META, ocp.args.JsonRestore, ocp.JsonCheckpointHandler())
    restore_args_tree = jax.tree.map(
        lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape, dtype=a.dtype), target)
    try:
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler(handler_registry=registry)) as ckpt:
            out = ckpt.restore(path, ocp.args.Composite(**{item: ocp.args.PyTreeRestore(
                item=target, restore_args=restore_args_tree, partial_restore=True)}))[item]
    except Exception as e:  # Orbax and TensorStore raise many types; the caller needs which file failed
        raise CheckpointError(f"{path}: cannot restore ({type(e).__name__}: {first_line(e)})") from e
    restored = {_key(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(out)[0]}
    missing = sorted(set(target_flat) - set(restored))
    if missing:
        raise CheckpointError(f"{path / item}: {missing[0]!r} was not restored")
    return _nest({back[name]: restored[name] for name in target_flat})


def restore_params(path: str | Path, *, mesh=None) -> tuple[Qwen2Config, dict]:
    """(config, parameters) in their stored dtype, placed by the sharding table on `mesh` (default:
    one device), whatever mesh they were saved from. Reads a parameter checkpoint (item "params")
    or a training checkpoint (the parameters of its TrainState only); either's meta must carry
    "hf_config"."""
    path = _existing(path)
    meta = read_meta(path)
    if "hf_config" not in meta:
        raise CheckpointError(f"{path}: metadata has no 'hf_config' (not a parameter checkpoint)")
    cfg = Qwen2Config.from_hf_dict(meta["hf_config"])
    item, prefix = params_location(path)
    if prefix:
        return cfg, _restore_subtree(path, item, prefix, abstract_params(cfg, mesh=mesh))
    stored = stored_arrays(path, PARAMS)

    def stored_dtype(p, a):  # a missing array is left for restore's check to report
        s = stored.get(_key(p))
        return a if s is None else jax.ShapeDtypeStruct(a.shape, s.dtype, sharding=a.sharding)

    target = jax.tree_util.tree_map_with_path(stored_dtype, abstract_params(cfg, mesh=mesh))
    trees, _ = restore(path, {PARAMS: target})
    return cfg, trees[PARAMS]
