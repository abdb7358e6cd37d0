"""Sharding: logical axis names -> mesh axes, in one table.

Parameters name their axes logically (`("embed", "mlp")`); activations use `batch`. The mesh has
three axes: `data` (pure data parallelism), `fsdp` (data parallelism with parameters and optimizer
state sharded), `tp` (tensor parallelism). Change the layout by changing the table, not the model.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tp")
# A weight with this many elements is refused rather than replicated when the mesh does not divide
# its dimension (e.g. tp 3 over the 151,936-token vocabulary): on every device it would cost more
# than sharding saves. Smaller ones (tiny test models, biases) are replicated.
REPLICATION_LIMIT = 2**20


class ShardingError(ValueError):
    """A mesh that would replicate a large weight; the message names the dimension."""

LOGICAL_AXIS_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "length": None,
    "vocab": "tp",
    "embed": "fsdp",
    "heads": "tp",
    "kv_heads": "tp",
    "mlp": "tp",
    "norm": None,  # RMSNorm scales: every layer's [embed] ones and qwen3's per-head q/k [head_dim] ones
}


def make_mesh(data: int = 1, fsdp: int = -1, tp: int = 1, devices=None) -> Mesh:
    """A (data, fsdp, tp) mesh; one axis may be -1 to take the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tp]
    if sizes.count(-1) > 1:
        raise ValueError("at most one mesh axis may be -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices cannot be split into mesh axes {sizes}")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, "
                         f"{len(devices)} given")
    return Mesh(np.array(devices).reshape(sizes), MESH_AXES)


def logical_to_spec(logical_axes, shape=None, mesh: Mesh | None = None) -> PartitionSpec:
    """PartitionSpec for logical axis names. With shape and mesh, an axis the mesh does not divide
    evenly is replicated instead (tiny test models have dims no mesh divides), unless the weight
    has REPLICATION_LIMIT elements or more: then ShardingError."""
    spec = []
    for i, name in enumerate(logical_axes):
        if name not in LOGICAL_AXIS_RULES:
            raise KeyError(f"logical axis {name!r} has no sharding rule")
        target = LOGICAL_AXIS_RULES[name]
        if target is not None and shape is not None and mesh is not None:
            names = (target,) if isinstance(target, str) else target
            ways = int(np.prod([mesh.shape[n] for n in names]))
            if shape[i] % ways:
                if np.prod(shape, dtype=np.int64) >= REPLICATION_LIMIT:
                    raise ShardingError(
                        f"the {name} dimension ({shape[i]}) of a {list(shape)} weight does not split over mesh "
                        f"axis {'x'.join(names)} = {ways}: it would be replicated on every device; choose a "
                        "mesh size that divides it")
                target = None
        spec.append(target)
    return PartitionSpec(*spec)


def is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def leaf_sharding(x, mesh: Mesh) -> NamedSharding:
    """A Variable by its logical axes; any other leaf (a step counter) replicated."""
    axes = x.get_metadata().get("logical_axes") if is_variable(x) else None
    return NamedSharding(mesh, PartitionSpec() if axes is None else logical_to_spec(axes, x.shape, mesh))


def state_shardings(tree, mesh: Mesh):
    """NamedShardings for any pytree holding nnx Variables, real or abstract: a model's State, AdamW
    moments mirroring it, a whole train state."""
    return jax.tree.map(lambda x: leaf_sharding(x, mesh), tree, is_leaf=is_variable)


BATCH_AXES = tuple(LOGICAL_AXIS_RULES["batch"])


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways a batch splits: the product of the mesh axes that rows are sharded over."""
    size = 1
    for axis in BATCH_AXES:
        size *= mesh.shape[axis]
    return size


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Shards the leading (batch) dimension over the data-parallel axes, replicates the rest."""
    return NamedSharding(mesh, PartitionSpec(LOGICAL_AXIS_RULES["batch"], *([None] * (ndim - 1))))


def build_sharded(make_model, mesh: Mesh):
    """Builds `make_model()` with every parameter created directly in its sharding.

    The model is traced abstractly first (no memory), then initialised inside one jit whose output
    shardings are the table's, so no device ever holds the whole model.
    """
    abstract = nnx.eval_shape(make_model)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh)

    init = jax.jit(lambda: nnx.state(make_model()), out_shardings=shardings)
    return nnx.merge(graphdef, init())
