"""Learning-rate schedules with linear warmup, value for value as transformers' schedulers.

optax evaluates a schedule at the number of updates already applied, and transformers steps its
scheduler after the optimizer, so both give update n the rate lr(n): the first update uses lr(0),
which is 0 whenever there is warmup.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from jgrpo.grpo.config import OptimizerConfig


def warmup_steps(cfg: OptimizerConfig) -> int:
    """An explicit count, else ceil(total_steps x warmup_ratio) as transformers rounds it; 0 for
    `constant`, which ignores warmup in transformers too (`constant_with_warmup` keeps it)."""
    if cfg.schedule == "constant":
        return 0
    if cfg.warmup_steps is not None:
        return cfg.warmup_steps
    return math.ceil(cfg.total_steps * cfg.warmup_ratio)


def lr_multiplier(step, cfg: OptimizerConfig):
    """Fraction of the peak rate at `step` (a traced int or a Python int)."""
    warmup, total = warmup_steps(cfg), cfg.total_steps
    step = jnp.asarray(step, jnp.float32)
    ramp = step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.schedule in ("constant", "constant_with_warmup"):
        decay = jnp.float32(1.0)
    elif cfg.schedule == "linear":
        decay = jnp.maximum(0.0, (total - step) / max(1, total - warmup))
    else:
        min_rate = cfg.min_lr_rate if cfg.schedule == "cosine_with_min_lr" else 0.0
        cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * cfg.num_cycles * 2.0 * progress))
        decay = jnp.maximum(0.0, cosine * (1.0 - min_rate) + min_rate)
    return jnp.where(step < warmup, ramp, decay)


def make_schedule(cfg: OptimizerConfig):
    """optax schedule: update count -> learning rate."""
    return lambda count: cfg.learning_rate * lr_multiplier(count, cfg)


def schedule_extends(cfg: OptimizerConfig, old_total_steps: int) -> bool:
    """Whether the schedule over cfg.total_steps gives the updates a run over old_total_steps has
    made or would make the same learning rates: true for a constant schedule, false for one whose
    shape stretches with its length (a resumed run must not silently change its past schedule)."""
    old = dataclasses.replace(cfg, total_steps=old_total_steps)
    steps = jnp.arange(min(old_total_steps, cfg.total_steps))
    return bool(jnp.all(lr_multiplier(steps, cfg) == lr_multiplier(steps, old)))
