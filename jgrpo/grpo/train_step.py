"""The jitted, sharded GRPO update and the no-grad log-prob pass for the reference / old policy.

The trainable state is a pytree (params as an nnx State, AdamW state mirroring it, and the update
count) so it can be donated, sharded by the model's logical axes and checkpointed by Orbax. One
call of the step is one optimizer update: it scans over the batch's micro-batches, accumulating
gradients in fp32 with the parameters' sharding, then clips and applies AdamW.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jgrpo.grpo.batch import RolloutBatch
from jgrpo.grpo.config import LossConfig, OptimizerConfig
from jgrpo.grpo.logprobs import completion_logprobs
from jgrpo.grpo.losses import AGGREGATIONS, token_terms
from jgrpo.grpo.metrics import batch_metrics, token_means, token_sums
from jgrpo.grpo.optimizer import make_optimizer
from jgrpo.grpo.schedule import make_schedule
from jgrpo.model.sharding import LOGICAL_AXIS_RULES, logical_to_spec


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates applied so far
    params: nnx.State
    opt_state: optax.OptState


def _leaf_sharding(x, mesh: Mesh) -> NamedSharding:
    axes = x.get_metadata().get("logical_axes") if isinstance(x, nnx.Variable) else None
    return NamedSharding(mesh, PartitionSpec() if axes is None else logical_to_spec(axes, x.shape, mesh))


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def tree_shardings(tree, mesh: Mesh):
    """NamedShardings for any pytree holding nnx Variables (params, AdamW moments): each Variable by
    its logical axes, every other leaf (counters) replicated."""
    return jax.tree.map(lambda x: _leaf_sharding(x, mesh), tree, is_leaf=_is_variable)


def _batch_axes_size(mesh: Mesh) -> int:
    axes = LOGICAL_AXIS_RULES["batch"]
    axes = (axes,) if isinstance(axes, str) else axes
    size = 1
    for a in axes:
        size *= mesh.shape[a]
    return size


def _rows_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Rows over the data-parallel axes, after `leading` unsharded axes; trailing axes replicated."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), LOGICAL_AXIS_RULES["batch"]))


def _micro_batches(tree, micro_batch_size: int, mesh: Mesh):
    """[B, ...] -> [B / m, m, ...] with every micro-batch spread over all data-parallel devices."""
    def split(x):
        x = x.reshape(x.shape[0] // micro_batch_size, micro_batch_size, *x.shape[1:])
        return jax.lax.with_sharding_constraint(x, _rows_sharding(mesh, leading=1))

    return jax.tree.map(split, tree)


def _check_micro_batch(batch_size: int, micro_batch_size: int, mesh: Mesh):
    if batch_size % micro_batch_size:
        raise ValueError(f"batch of {batch_size} completions is not a multiple of micro_batch_size {micro_batch_size}")
    if micro_batch_size % _batch_axes_size(mesh):
        raise ValueError(f"micro_batch_size {micro_batch_size} does not split over {_batch_axes_size(mesh)} "
                         "data-parallel devices")


def init_train_state(model: nnx.Module, opt_cfg: OptimizerConfig, mesh: Mesh):
    """(graphdef, TrainState) from a built (sharded) model. The state holds the model's own
    parameter arrays, not copies; only the AdamW moments are allocated, sharded like them."""
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(opt_cfg)
    opt_shardings = tree_shardings(jax.eval_shape(tx.init, params), mesh)
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), NamedSharding(mesh, PartitionSpec()))
    return graphdef, TrainState(step=step, params=params, opt_state=opt_state)


def abstract_train_state(abstract_params: nnx.State, opt_cfg: OptimizerConfig, mesh: Mesh) -> TrainState:
    """The TrainState's shapes, dtypes and shardings without allocating it (for Orbax restore and for
    compiling against abstract inputs). abstract_params: nnx.split(nnx.eval_shape(make_model), nnx.Param)[1]."""
    tx = make_optimizer(opt_cfg)
    shape = jax.eval_shape(lambda p: TrainState(jnp.zeros((), jnp.int32), p, tx.init(p)), abstract_params)

    def place(x):
        leaf = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_leaf_sharding(x, mesh))
        return x.replace(leaf) if _is_variable(x) else leaf

    return jax.tree.map(place, shape, is_leaf=_is_variable)


def make_train_step(graphdef, state: TrainState, loss_cfg: LossConfig, opt_cfg: OptimizerConfig, mesh: Mesh):
    """jitted step(state, batch) -> (state, metrics). `state` (real or abstract) fixes the shardings;
    the state argument is donated. Metrics are replicated fp32 scalars under TRL's names."""
    tx = make_optimizer(opt_cfg)
    schedule = make_schedule(opt_cfg)
    aggregation = AGGREGATIONS[loss_cfg.loss_type]
    state_shardings = tree_shardings(state, mesh)

    def micro_loss(params, mb: RolloutBatch, denominator):
        model = nnx.merge(graphdef, params)
        logps, entropies = completion_logprobs(
            model, mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask,
            temperature=loss_cfg.temperature, chunk_size=loss_cfg.logprob_chunk_size, with_entropy=True)
        terms = token_terms(logps, mb.advantages, loss_cfg, old_logps=mb.old_logps, ref_logps=mb.ref_logps,
                            sampler_logps=mb.sampler_logps)
        mask = mb.loss_mask(loss_cfg.mask_truncated_completions)
        old = jax.lax.stop_gradient(logps) if mb.old_logps is None else mb.old_logps
        sums = token_sums(terms, entropies, old, mb.advantages, mask, loss_cfg, mb.sampler_logps)
        return aggregation.numerator(terms.loss, mask, loss_cfg) / denominator, sums

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def step(state: TrainState, batch: RolloutBatch):
        _check_micro_batch(batch.size, loss_cfg.micro_batch_size, mesh)
        if loss_cfg.num_iterations > 1 and batch.old_logps is None:
            raise ValueError("num_iterations > 1 needs old_logps in the batch")
        denominator = aggregation.denominator(batch.loss_mask(loss_cfg.mask_truncated_completions), loss_cfg)
        micro = _micro_batches(batch, loss_cfg.micro_batch_size, mesh)
        param_shardings = state_shardings.params
        constrain = lambda g: jax.lax.with_sharding_constraint(g, param_shardings)

        def accumulate(carry, mb):
            grads, loss, sums = carry
            (mb_loss, mb_sums), mb_grads = grad_fn(state.params, mb, denominator)
            grads = constrain(jax.tree.map(jnp.add, grads, mb_grads))
            return (grads, loss + mb_loss, jax.tree.map(jnp.add, sums, mb_sums)), None

        first = jax.tree.map(lambda x: x[0], micro)
        sums_shape = jax.eval_shape(micro_loss, state.params, first, denominator)[1]
        zeros = (constrain(jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)),
                 jnp.float32(0.0), jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums_shape))
        (grads, loss, sums), _ = jax.lax.scan(accumulate, zeros, micro)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(state.step)}
        metrics.update(token_means(sums))
        metrics.update(batch_metrics(batch, loss_cfg.num_generations))
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(step, in_shardings=(state_shardings, _rows_sharding(mesh)),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)


def make_logprob_fn(graphdef, params, mesh: Mesh, *, micro_batch_size: int, temperature: float = 1.0,
                    chunk_size: int = 256):
    """jitted fn(params, prompt_ids, prompt_mask, completion_ids, completion_mask) -> logps [B, C]
    fp32, no gradient: the reference model's (ref params) or the old policy's (current params).
    `params` (real or abstract) fixes the shardings; a bf16 copy works with the same graphdef."""

    def logps_of(params, prompt_ids, prompt_mask, completion_ids, completion_mask):
        _check_micro_batch(prompt_ids.shape[0], micro_batch_size, mesh)
        model = nnx.merge(graphdef, params)

        def one(_, mb):
            logps, _ = completion_logprobs(model, *mb, temperature=temperature, chunk_size=chunk_size)
            return None, logps

        micro = _micro_batches((prompt_ids, prompt_mask, completion_ids, completion_mask), micro_batch_size, mesh)
        _, logps = jax.lax.scan(one, None, micro)
        return jax.lax.stop_gradient(logps.reshape(prompt_ids.shape[0], -1))

    rows = _rows_sharding(mesh)
    return jax.jit(logps_of, in_shardings=(tree_shardings(params, mesh), rows, rows, rows, rows), out_shardings=rows)
