"""Where the update's arrays live on the mesh: state by the model's logical axes, rollouts by rows,
and the weights each forward pass uses."""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jgrpo.model.sharding import BATCH_AXES, LOGICAL_AXIS_RULES, data_parallel_size, is_variable, leaf_sharding


def rows_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Rows over the data-parallel axes, after `leading` unsharded axes; trailing axes replicated."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), LOGICAL_AXIS_RULES["batch"]))


def micro_batches(tree, micro_batch_size: int, mesh: Mesh):
    """[B, ...] -> [B / m, m, ...] with every micro-batch spread over all data-parallel devices."""
    def split(x):
        x = x.reshape(x.shape[0] // micro_batch_size, micro_batch_size, *x.shape[1:])
        return jax.lax.with_sharding_constraint(x, rows_sharding(mesh, leading=1))

    return jax.tree.map(split, tree)


def check_micro_batch(batch_size: int, micro_batch_size: int, mesh: Mesh):
    if batch_size % micro_batch_size:
        raise ValueError(f"batch of {batch_size} completions is not a multiple of micro_batch_size {micro_batch_size}")
    if micro_batch_size % data_parallel_size(mesh):
        raise ValueError(f"micro_batch_size {micro_batch_size} does not split over {data_parallel_size(mesh)} "
                         "data-parallel devices")


def _without_data_axes(entry):
    names = (entry,) if isinstance(entry, str) else tuple(entry or ())
    kept = tuple(n for n in names if n not in BATCH_AXES)
    return kept[0] if len(kept) == 1 else (kept or None)


def gathered_for_compute(params, mesh: Mesh, dtype):
    """The weights a forward pass reads: cast to the compute dtype, then gathered over the data-
    parallel axes (tensor-parallel sharding kept). This is FSDP's all-gather made explicit: left to
    itself XLA's propagation follows the embed-sharded weights and gathers the activations instead,
    which holds whole-batch activations on every device. The cast comes first so the gathered copy
    is bf16 under a bf16 compute policy; every layer casts its weights to that dtype anyway. The
    backward mirrors it: weight gradients are reduce-scattered in the compute dtype, then widened
    to fp32 (DeepSpeed's default with bf16 too)."""
    def gather(v):
        spec = PartitionSpec(*(_without_data_axes(e) for e in leaf_sharding(v, mesh).spec))
        return v.replace(jax.lax.with_sharding_constraint(v[...].astype(dtype), NamedSharding(mesh, spec)))

    return jax.tree.map(gather, params, is_leaf=is_variable)
