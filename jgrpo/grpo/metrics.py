"""Training metrics under TRL's names.

Token metrics are means over the completion tokens the loss sees, in the whole optimizer batch
(TRL averages per micro-batch means instead; with equal token counts the two agree). Micro-batches
return sums, so accumulating them is addition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jgrpo.grpo.batch import RolloutBatch
from jgrpo.grpo.config import LossConfig
from jgrpo.grpo.losses import TokenTerms


def token_sums(terms: TokenTerms, entropies, old_logps, advantages, mask, cfg: LossConfig,
               sampler_logps=None) -> dict[str, jax.Array]:
    """Masked sums over one micro-batch's tokens; `tokens` is the count that turns them into means.
    old_logps: the trainer's log-probs before the update (TRL compares the sampler against these)."""
    adv = advantages[:, None]
    low = (terms.ratio < 1.0 - cfg.epsilon_low) & (adv < 0)
    high = (terms.ratio > 1.0 + cfg.epsilon_high) & (adv > 0)
    masked = lambda x: jnp.sum(jnp.where(mask > 0, x, 0.0))
    sums = {
        "tokens": jnp.sum(mask),
        "entropy": masked(entropies),
        "clip_ratio/low_mean": masked(low.astype(jnp.float32)),
        "clip_ratio/high_mean": masked(high.astype(jnp.float32)),
        "clip_ratio/region_mean": masked((low | high).astype(jnp.float32)),
    }
    if terms.kl is not None:
        sums["kl"] = masked(terms.kl)
    if sampler_logps is not None:
        sums["sampling/sampling_logp_difference/mean"] = masked(jnp.abs(old_logps - sampler_logps))
    return jax.lax.stop_gradient(sums)


def token_means(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
    tokens = jnp.maximum(sums["tokens"], 1.0)
    return {name: value / tokens for name, value in sums.items() if name != "tokens"}


def batch_metrics(batch: RolloutBatch, num_generations: int) -> dict[str, jax.Array]:
    """Reward and length statistics of the rollouts themselves (no model involved)."""
    groups = batch.rewards.astype(jnp.float32).reshape(-1, num_generations)
    group_std = groups.std(axis=1, ddof=1)
    lengths = batch.completion_mask.astype(jnp.float32).sum(axis=1)
    return {
        "reward": groups.mean(),
        "reward_std": group_std.mean(),
        "frac_reward_zero_std": jnp.isclose(group_std, 0.0).astype(jnp.float32).mean(),
        "completions/mean_length": lengths.mean(),
        "completions/clipped_ratio": batch.truncated.astype(jnp.float32).mean(),
    }
