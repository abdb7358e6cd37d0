"""One optimizer step's worth of rollouts, as the update consumes it."""

from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class RolloutBatch:
    """B completions; those of one prompt are contiguous (num_generations of them).

    prompt_ids / prompt_mask [B, P]: left-padded.
    completion_ids / completion_mask [B, C]: right-padded; the mask covers tokens up to and including
    the first EOS.
    advantages [B] fp32; rewards [B] fp32 (the total reward, for the metrics only).
    truncated [B] bool: the completion hit the length limit without an EOS.
    old_logps [B, C]: the trainer's log-probs before this batch's first update (num_iterations > 1).
    ref_logps [B, C]: the frozen reference's log-probs (beta > 0).
    sampler_logps [B, C]: the rollout engine's log-probs (importance-sampling correction, logp-gap metric).
    """

    prompt_ids: jax.Array
    prompt_mask: jax.Array
    completion_ids: jax.Array
    completion_mask: jax.Array
    advantages: jax.Array
    rewards: jax.Array
    truncated: jax.Array
    old_logps: jax.Array | None = None
    ref_logps: jax.Array | None = None
    sampler_logps: jax.Array | None = None

    @property
    def size(self) -> int:
        return self.completion_ids.shape[0]

    def loss_mask(self, mask_truncated_completions: bool) -> jax.Array:
        """fp32 [B, C]: the completion tokens the loss sees."""
        mask = self.completion_mask.astype(bool)
        if mask_truncated_completions:
            mask = mask & ~self.truncated.astype(bool)[:, None]
        return mask.astype("float32")
