"""The update really learns: a tiny model sampled from itself raises a fixed reward."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgrpo.grpo import LossConfig, OptimizerConfig, RolloutBatch, group_advantages, init_train_state, make_train_step
from jgrpo.model import DtypePolicy, Qwen2Config, Qwen2ForCausalLM, build_sharded, make_mesh

VOCAB, TARGET = 8, 3
PROMPTS, G, P, C = 4, 4, 3, 6
STEPS = 200


def make_rollout(graphdef, prompt_ids):
    """A batch of completions drawn from the model itself at temperature 1 (one full forward per
    token), rewarded by their share of TARGET tokens."""
    b = prompt_ids.shape[0]

    @jax.jit
    def rollout(params, seed):
        model = nnx.merge(graphdef, params)
        key = jax.random.key(seed)

        def draw(t, ids):
            mask = (jnp.arange(P + C) < P + t).astype(jnp.int32)[None].repeat(b, 0)
            logits, _ = model(ids, mask)
            last = jax.lax.dynamic_index_in_dim(logits, P + t - 1, axis=1, keepdims=False)
            return ids.at[:, P + t].set(jax.random.categorical(jax.random.fold_in(key, t), last))

        ids = jnp.concatenate([prompt_ids, jnp.zeros((b, C), jnp.int32)], axis=1)
        completions = jax.lax.fori_loop(0, C, draw, ids)[:, P:]
        rewards = (completions == TARGET).mean(axis=1).astype(jnp.float32)
        return RolloutBatch(prompt_ids=prompt_ids, prompt_mask=jnp.ones_like(prompt_ids), completion_ids=completions,
                            completion_mask=jnp.ones_like(completions), advantages=group_advantages(rewards, G),
                            rewards=rewards, truncated=jnp.zeros(b, bool))

    return rollout


def test_reward_goes_up_with_bf16_compute_and_fp32_master_weights():
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    mesh = make_mesh(devices=jax.devices()[:1])
    loss_cfg = LossConfig(beta=0.0, num_generations=G, micro_batch_size=PROMPTS * G)
    opt_cfg = OptimizerConfig(learning_rate=3e-3, schedule="constant", warmup_ratio=0.0, total_steps=STEPS)
    mixed = DtypePolicy(param_dtype=jnp.float32, compute_dtype=jnp.bfloat16)
    model = build_sharded(lambda: Qwen2ForCausalLM(cfg, policy=mixed, rngs=nnx.Rngs(0)), mesh)  # one compile
    graphdef, state = init_train_state(model, opt_cfg, mesh)
    step = make_train_step(graphdef, state, loss_cfg, opt_cfg, mesh)
    prompt_ids = np.repeat(np.random.default_rng(1).integers(0, VOCAB, (PROMPTS, P), np.int32), G, axis=0)
    rollout = make_rollout(graphdef, prompt_ids)

    rewards_seen = []
    for i in range(STEPS):
        state, metrics = step(state, rollout(state.params, i))
        rewards_seen.append(metrics["reward"])
    rewards_seen = [float(r) for r in rewards_seen]
    first, last = np.mean(rewards_seen[:5]), np.mean(rewards_seen[-5:])
    assert first < 0.3 and last > 0.8, (first, last)
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}  # fp32 master weights
