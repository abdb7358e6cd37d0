"""Group-relative advantages: each completion's reward against its prompt's other completions."""

from __future__ import annotations

import jax.numpy as jnp

ADVANTAGE_EPS = 1e-4  # open-rs / TRL: added to the std so a group of equal rewards gives 0, not nan


def group_advantages(rewards, num_generations: int, scale_rewards: str = "group", eps: float = ADVANTAGE_EPS):
    """rewards [B] (B = prompts x num_generations, each prompt's completions contiguous) -> [B] fp32.

    A = (r - mean of its group) / (std + eps) with the unbiased (N - 1) std of the group
    (`group`, open-rs), of the whole batch (`batch`), or no division at all (`none`, Dr. GRPO).
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    groups = rewards.reshape(-1, num_generations)
    centred = (groups - groups.mean(axis=1, keepdims=True)).reshape(-1)
    if scale_rewards == "group":
        std = jnp.repeat(groups.std(axis=1, ddof=1), num_generations)
    elif scale_rewards == "batch":
        std = rewards.std(ddof=1)
    elif scale_rewards == "none":
        return centred
    else:
        raise ValueError(f"scale_rewards {scale_rewards!r} is not one of group, batch, none")
    return centred / (std + eps)
