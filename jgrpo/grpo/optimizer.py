"""AdamW with global-norm clipping, as the Hugging Face Trainer applies it."""

from __future__ import annotations

import jax
import optax

from jgrpo.grpo.config import OptimizerConfig
from jgrpo.grpo.schedule import make_schedule


def _decay_mask(params):
    # The HF Trainer exempts biases and norm scales from weight decay; in Qwen2 those are exactly
    # the 1-D parameters.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    adamw = optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                        mask=_decay_mask)
    if cfg.max_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adamw)
