"""The native rollout engine: one jit-compiled program per shape bucket runs the prefill and then a
`lax.while_loop` of decode steps over a static KV cache, leaving the loop as soon as every row
has stopped.

Shapes are bucketed so a run compiles a handful of programs: the prompt length is padded (on the
left) to a power of two of at least `min_prompt_bucket`, the number of prompts to a power of two
that the mesh's data-parallel size divides. `max_new_tokens`, `n`, greedy-or-not, top-k and
whether top-p is on are compile-time constants; temperature, top_p, min_new_tokens and the seed
are not, so changing them never recompiles.

Randomness: call number c (counting from 0, `engine.calls`) of `generate` uses the key
fold_in(key(params.seed), c); completion row r (prompt-major: prompt i, sample j is row i * n + j)
draws its token at step t from one uniform number under fold_in(fold_in(that key, r), t). A run
is reproducible from its seed and call count, and a row's tokens do not depend on how many rows
were padded around it.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jgrpo.distributed import to_global, to_host
from jgrpo.model import KVCache, Qwen2ForCausalLM, batch_sharding, data_parallel_size, make_mesh, state_shardings
from jgrpo.model.sharding import LOGICAL_AXIS_RULES
from jgrpo.sampling.base import (Completion, LogprobsMode, SamplingParams, check_logprobs_mode, decode_texts,
                                 WeightSync, pow2_at_least)
from jgrpo.sampling.draw import draw


def _mesh_of(model: Qwen2ForCausalLM):
    sharding = jax.tree.leaves(nnx.state(model, nnx.Param))[0].sharding
    if isinstance(sharding, NamedSharding):
        return sharding.mesh
    return make_mesh(devices=sorted(sharding.device_set, key=lambda d: d.id))


class JaxEngine:
    """Samples from a `Qwen2ForCausalLM` in JAX.

    mesh None: sample on the model's own mesh straight from its live parameters (nothing is
    copied, so `generate` never sees stale weights). A mesh: the sampler keeps its own copy there,
    placed per the sharding table, refreshed by `sync_weights`.
    """

    def __init__(self, model: Qwen2ForCausalLM, *, eos_token_ids, tokenizer=None, mesh=None,
                 pad_token_id: int = 0, logprobs_mode: LogprobsMode = "raw", min_prompt_bucket: int = 32,
                 top_p_candidates: int = 128):
        check_logprobs_mode(logprobs_mode)
        self.eos_token_ids = tuple(int(i) for i in eos_token_ids)
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id
        self.logprobs_mode = logprobs_mode
        self.min_prompt_bucket = min_prompt_bucket
        self.top_p_candidates = top_p_candidates
        self.calls = 0  # generate calls so far: part of the PRNG key; restore it to resume a run
        self.traces = 0  # programs compiled so far
        self._own_copy = mesh is not None
        self.mesh = mesh if mesh is not None else _mesh_of(model)
        self._graphdef = nnx.graphdef(model)
        self._model, self._state = None, None
        self.sync_weights(model)
        self._rollout = jax.jit(self._rollout_fn, static_argnames=("n", "max_new", "greedy", "top_k", "use_top_p"))

    def sync_weights(self, model: Qwen2ForCausalLM) -> WeightSync:
        start = time.perf_counter()
        if nnx.graphdef(model) != self._graphdef:
            raise ValueError("sync_weights: the model's structure differs from the one this engine was built for")
        if self._own_copy:
            state = nnx.state(model)
            self._state = jax.block_until_ready(jax.device_put(state, state_shardings(state, self.mesh)))
            moved = sum(x.nbytes for x in jax.tree.leaves(self._state))
        else:
            self._model, moved = model, 0
        return WeightSync(time.perf_counter() - start, moved)

    def _current_state(self):
        return self._state if self._own_copy else nnx.state(self._model)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate needs at least one prompt and no empty prompt")
        dp = data_parallel_size(self.mesh)
        batch = -(-pow2_at_least(len(prompts)) // dp) * dp
        length = pow2_at_least(max(len(p) for p in prompts), self.min_prompt_bucket)
        ids = np.full((batch, length), self.pad_token_id, np.int32)
        mask = np.zeros((batch, length), bool)
        for i, p in enumerate(prompts):
            ids[i, length - len(p):] = p
            mask[i, length - len(p):] = True
        rows = batch_sharding(self.mesh)
        key = jax.random.fold_in(jax.random.key(params.seed), self.calls)
        self.calls += 1
        outputs = self._rollout(
            self._current_state(), to_global(ids, rows), to_global(mask, rows), key,
            jnp.float32(params.temperature), jnp.float32(params.top_p), jnp.int32(params.min_new_tokens),
            n=params.n, max_new=params.max_new_tokens, greedy=params.greedy, top_k=params.top_k,
            use_top_p=params.top_p < 1.0)
        tokens, logprobs, lengths, stopped = (to_host(x) for x in outputs)
        count = len(prompts) * params.n
        token_ids = [tokens[r, :lengths[r]].astype(np.int32) for r in range(count)]
        texts = decode_texts(self.tokenizer, token_ids)
        return [Completion(prompt_index=r // params.n, token_ids=token_ids[r],
                           logprobs=logprobs[r, :lengths[r]].astype(np.float32),
                           finish_reason="stop" if stopped[r] else "length", text=texts[r])
                for r in range(count)]

    def _rows_constraint(self, x):
        """Keeps completion rows split over the data-parallel axes; other dims as the compiler likes."""
        spec = PartitionSpec(LOGICAL_AXIS_RULES["batch"], *[PartitionSpec.UNCONSTRAINED] * (x.ndim - 1))
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    def _rollout_fn(self, state, ids, mask, key, temperature, top_p, min_new, *, n, max_new, greedy, top_k,
                    use_top_p):
        self.traces += 1
        model = nnx.merge(self._graphdef, state)
        batch, length = ids.shape
        hidden, cache = model.hidden_states(ids, mask, model.init_cache(batch, length + max_new))
        logits = model.logits(hidden[:, -1])

        # The n samples of a prompt share its prefill: repeat the cache rather than the prompt.
        def per_row(x):
            return self._rows_constraint(jnp.repeat(x, n, axis=0))

        cache = KVCache(keys=[per_row(k) for k in cache.keys], values=[per_row(v) for v in cache.values],
                        mask=per_row(cache.mask), index=cache.index)
        logits = per_row(logits)
        rows = batch * n
        row_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(rows))
        eos = jnp.asarray(self.eos_token_ids, jnp.int32)
        eos_column = jnp.isin(jnp.arange(logits.shape[-1]), eos)
        choose = functools.partial(draw, greedy=greedy, top_k=top_k, use_top_p=use_top_p,
                                   candidates=self.top_p_candidates)

        def emit(t, logits, carry):
            """Draws token t of every row from `logits` and records it."""
            done, lengths, stopped, tokens, logprobs = carry
            u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, t)))(row_keys)
            banned = eos_column & (t < min_new) if self.eos_token_ids else None
            token, logprob = choose(u, logits, temperature, top_p, banned)
            if self.logprobs_mode == "raw":
                logprob = jnp.take_along_axis(logits, token[:, None], -1)[:, 0] - jax.nn.logsumexp(logits, -1)
            token = jnp.where(done, self.pad_token_id, token)
            tokens = tokens.at[:, t].set(token)
            logprobs = logprobs.at[:, t].set(logprob)
            lengths = jnp.where(done, lengths, t + 1)
            hit = ~done & jnp.isin(token, eos)
            return token, (done | hit, lengths, stopped | hit, tokens, logprobs)

        # Rows past the real prompts are padding: done before they start.
        done = jnp.repeat(~mask.any(-1), n)
        carry = (done, jnp.zeros(rows, jnp.int32), jnp.zeros(rows, bool), jnp.zeros((rows, max_new), jnp.int32),
                 jnp.zeros((rows, max_new), jnp.float32))
        token, carry = emit(0, logits, carry)

        def keep_going(loop):
            t, _, _, carry = loop
            return (t < max_new) & ~jnp.all(carry[0])

        def step(loop):
            t, token, cache, carry = loop
            hidden, cache = model.hidden_states(token[:, None], jnp.ones((rows, 1), bool), cache)
            token, carry = emit(t, model.logits(hidden[:, 0]), carry)
            return t + 1, token, cache, carry

        _, _, _, (_, lengths, stopped, tokens, logprobs) = jax.lax.while_loop(
            keep_going, step, (jnp.int32(1), token, cache, carry))
        return tokens, logprobs, lengths, stopped
