"""The GRPO per-token loss and the ways of averaging it, chosen by name.

Per token (TRL's formulation):
    ratio = exp(logp - old)                      old = stop_gradient(logp) when not given
    pg    = -min(ratio A, clip(ratio, 1 - eps_low, 1 + eps_high) A) [x IS weight]
    loss  = pg + beta KL,  KL = exp(ref - logp) - (ref - logp) - 1   (k3)
IS weight = min(exp(old - sampler), cap) (TRL's vllm_importance_sampling_correction).

Every aggregation is written as loss = sum over micro-batches of `numerator` / `denominator` of the
whole optimizer batch. The denominator depends on the masks only, so it is known before any
gradient and accumulating micro-batches gives exactly the loss (and gradient) of one big batch:

    bnpo     mean over groups of `group_size` consecutive completions of the group's token mean.
             open-rs/TRL bnpo is the token mean of one device's micro-batch, averaged over devices
             and accumulation steps; there one micro-batch is one prompt's 6 completions, so with
             group_size 6 this is their loss exactly, however the batch is split or sharded here.
    grpo     mean over completions of each completion's token mean.
    dr_grpo  token sum / (completions x max_completion_length).
    dapo     token sum / completion tokens in the whole optimizer batch.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jgrpo.grpo.config import LossConfig


@dataclasses.dataclass(frozen=True)
class TokenTerms:
    loss: jax.Array  # [B, C] per-token loss (unmasked)
    ratio: jax.Array  # [B, C] exp(logp - old), the unclipped importance ratio
    kl: jax.Array | None  # [B, C] k3 KL to the reference; None without ref_logps


def token_terms(logps, advantages, cfg: LossConfig, *, old_logps=None, ref_logps=None, sampler_logps=None):
    """Per-token GRPO loss of log-probs [B, C] given advantages [B]."""
    old = jax.lax.stop_gradient(logps) if old_logps is None else old_logps
    ratio = jnp.exp(logps - old)
    clipped = jnp.clip(ratio, 1.0 - cfg.epsilon_low, 1.0 + cfg.epsilon_high)
    adv = advantages[:, None]
    loss = -jnp.minimum(ratio * adv, clipped * adv)
    if cfg.importance_sampling_cap is not None:
        if sampler_logps is None:
            raise ValueError("importance_sampling_cap is set but the batch has no sampler_logps")
        loss = loss * jnp.minimum(jnp.exp(old - sampler_logps), cfg.importance_sampling_cap)
    kl = None
    if ref_logps is not None:
        delta = ref_logps - logps
        kl = jnp.exp(delta) - delta - 1.0
    if cfg.beta > 0:
        if kl is None:
            raise ValueError("beta > 0 but the batch has no ref_logps")
        loss = loss + cfg.beta * kl
    return TokenTerms(loss=loss, ratio=ratio, kl=kl)


@dataclasses.dataclass(frozen=True)
class Aggregation:
    numerator: Callable[[jax.Array, jax.Array, LossConfig], jax.Array]  # (token_loss, mask, cfg)
    denominator: Callable[[jax.Array, LossConfig], jax.Array]  # (mask of the whole batch, cfg)


def _token_means(loss, mask, rows):
    """Token mean of each block of `rows` consecutive completions; an empty block counts 0."""
    loss, mask = loss.reshape(-1, rows * loss.shape[1]), mask.reshape(-1, rows * mask.shape[1])
    return jnp.sum(loss * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def _max_length(mask, cfg):
    return cfg.max_completion_length or mask.shape[1]


AGGREGATIONS: dict[str, Aggregation] = {
    "bnpo": Aggregation(
        numerator=lambda loss, mask, cfg: jnp.sum(_token_means(loss, mask, cfg.group_size)),
        denominator=lambda mask, cfg: jnp.float32(mask.shape[0] // cfg.group_size)),
    "grpo": Aggregation(
        numerator=lambda loss, mask, cfg: jnp.sum(_token_means(loss, mask, 1)),
        denominator=lambda mask, cfg: jnp.float32(mask.shape[0])),
    "dr_grpo": Aggregation(
        numerator=lambda loss, mask, cfg: jnp.sum(loss * mask),
        denominator=lambda mask, cfg: jnp.float32(mask.shape[0] * _max_length(mask, cfg))),
    "dapo": Aggregation(
        numerator=lambda loss, mask, cfg: jnp.sum(loss * mask),
        denominator=lambda mask, cfg: jnp.maximum(jnp.sum(mask), 1.0)),
}


def aggregate(token_loss, mask, cfg: LossConfig):
    """The loss of one whole optimizer batch, in one piece."""
    agg = AGGREGATIONS[cfg.loss_type]
    return agg.numerator(token_loss, mask, cfg) / agg.denominator(mask, cfg)
