"""The jitted, sharded GRPO update and the no-grad log-prob pass for the reference / old policy.

The trainable state is a pytree (params as an nnx State, AdamW state mirroring it, and the update
count) so it can be donated, sharded by the model's logical axes and checkpointed by Orbax. One
call of the step is one optimizer update in one jitted program: it loops over the batch's
micro-batches, accumulating gradients in fp32 with the parameters' sharding, then clips and applies
AdamW. Each forward pass gathers the weights it needs (FSDP) in the compute dtype.
"""

from __future__ import annotations

from typing import Callable

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
from jgrpo.grpo.placement import check_micro_batch, gathered_for_compute, micro_batches, rows_sharding
from jgrpo.grpo.schedule import make_schedule
from jgrpo.model.sharding import is_variable, leaf_sharding, state_shardings


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates applied so far
    params: nnx.State
    opt_state: optax.OptState


def init_train_state(model: nnx.Module, opt_cfg: OptimizerConfig, mesh: Mesh):
    """(graphdef, TrainState) from a built (sharded) model. The state holds the model's own
    parameter arrays, not copies; only the AdamW moments are allocated, sharded like them."""
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(opt_cfg)
    opt_shardings = state_shardings(jax.eval_shape(tx.init, params), mesh)
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), NamedSharding(mesh, PartitionSpec()))
    return graphdef, TrainState(step=step, params=params, opt_state=opt_state)


def abstract_train_state(abstract_params: nnx.State, opt_cfg: OptimizerConfig, mesh: Mesh) -> TrainState:
    """The TrainState's shapes, dtypes and shardings without allocating it (for Orbax restore and for
    compiling against abstract inputs). abstract_params: nnx.split(nnx.eval_shape(make_model), nnx.Param)[1]."""
    tx = make_optimizer(opt_cfg)
    shape = jax.eval_shape(lambda p: TrainState(jnp.zeros((), jnp.int32), p, tx.init(p)), abstract_params)

    def place(x):
        leaf = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=leaf_sharding(x, mesh))
        return x.replace(leaf) if is_variable(x) else leaf

    return jax.tree.map(place, shape, is_leaf=is_variable)


def _compute_dtype(graphdef, params):
    return nnx.merge(graphdef, params).policy.compute_dtype


def make_train_step(graphdef, state: TrainState, loss_cfg: LossConfig, opt_cfg: OptimizerConfig,
                    mesh: Mesh) -> Callable:
    """The update for states shaped and sharded like `state` (real or abstract):
    step(state, batch) -> (state, metrics), one jitted program compiled once per batch shape, the
    state donated. It loops over the micro-batches summing fp32 gradients sharded like the parameters,
    then clips and steps AdamW, unless the loss or the gradient is not finite (metric
    update_skipped 1). Metrics are replicated fp32 scalars under TRL's names."""
    tx = make_optimizer(opt_cfg)
    schedule = make_schedule(opt_cfg)
    aggregation = AGGREGATIONS[loss_cfg.loss_type]
    shardings = state_shardings(state, mesh)
    param_shardings = shardings.params
    compute_dtype = _compute_dtype(graphdef, state.params)
    replicated = NamedSharding(mesh, PartitionSpec())

    def micro_loss(params, mb: RolloutBatch, denominator):
        model = nnx.merge(graphdef, gathered_for_compute(params, mesh, compute_dtype))
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

    def accumulate(params, batch: RolloutBatch):
        check_micro_batch(batch.size, loss_cfg.micro_batch_size, mesh)
        if loss_cfg.num_iterations > 1 and batch.old_logps is None:
            raise ValueError("num_iterations > 1 needs old_logps in the batch")
        denominator = aggregation.denominator(batch.loss_mask(loss_cfg.mask_truncated_completions), loss_cfg)
        micro = micro_batches(batch, loss_cfg.micro_batch_size, mesh)
        constrain = lambda g: jax.lax.with_sharding_constraint(g, param_shardings)

        def add_micro_batch(i, carry):
            grads, loss, sums = carry
            mb = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), micro)
            (mb_loss, mb_sums), mb_grads = grad_fn(params, mb, denominator)
            grads = constrain(jax.tree.map(jnp.add, grads, mb_grads))
            return grads, loss + mb_loss, jax.tree.map(jnp.add, sums, mb_sums)

        first = jax.tree.map(lambda x: x[0], micro)
        sums_shape = jax.eval_shape(micro_loss, params, first, denominator)[1]
        zeros = (constrain(jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)),
                 jnp.float32(0.0), jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums_shape))
        # The micro-batch count goes through a barrier so that XLA cannot see a loop of one trip and
        # inline it: inlined next to the optimizer, its scheduler ran every layer's rematerialised
        # forward before the backward began (1.5B, one micro-batch: 288 GB per device instead of 32).
        count = jax.lax.optimization_barrier(jnp.int32(jax.tree.leaves(micro)[0].shape[0]))
        grads, loss, sums = jax.lax.fori_loop(0, count, add_micro_batch, zeros)
        return grads, {"loss": loss, **token_means(sums), **batch_metrics(batch, loss_cfg.num_generations)}

    def apply(state: TrainState, grads) -> TrainState:
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state)

    def step(state: TrainState, batch: RolloutBatch):
        grads, metrics = accumulate(state.params, batch)
        grad_norm = optax.tree.norm(grads)
        # A non-finite loss or gradient is never applied: the state stays the last good one (a cond,
        # not a select, so the donated state is updated in place or passed through, never copied).
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
        new_state = jax.lax.cond(finite, apply, lambda state, _: state, state, grads)
        metrics = {**metrics, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
                   "update_skipped": 1.0 - finite.astype(jnp.float32)}
        return new_state, metrics

    return jax.jit(step, in_shardings=(shardings, rows_sharding(mesh)), out_shardings=(shardings, replicated),
                   donate_argnums=0)


def make_logprob_fn(graphdef, params, mesh: Mesh, *, micro_batch_size: int, temperature: float = 1.0,
                    chunk_size: int = 256):
    """jitted fn(params, prompt_ids, prompt_mask, completion_ids, completion_mask) -> logps [B, C]
    fp32, no gradient: the reference model's (ref params) or the old policy's (current params).
    `params` (real or abstract) fixes the shardings; a bf16 copy works with the same graphdef."""

    compute_dtype = _compute_dtype(graphdef, params)

    def logps_of(params, prompt_ids, prompt_mask, completion_ids, completion_mask):
        check_micro_batch(prompt_ids.shape[0], micro_batch_size, mesh)

        def one(_, mb):
            # Built inside the scan body: nnx.remat writes the layers' Variables back, which must
            # belong to the trace it runs in.
            model = nnx.merge(graphdef, gathered_for_compute(params, mesh, compute_dtype))
            logps, _ = completion_logprobs(model, *mb, temperature=temperature, chunk_size=chunk_size)
            return None, logps

        micro = micro_batches((prompt_ids, prompt_mask, completion_ids, completion_mask), micro_batch_size, mesh)
        _, logps = jax.lax.scan(one, None, micro)
        return jax.lax.stop_gradient(logps.reshape(prompt_ids.shape[0], -1))

    rows = rows_sharding(mesh)
    return jax.jit(logps_of, in_shardings=(state_shardings(params, mesh), rows, rows, rows, rows), out_shardings=rows)
