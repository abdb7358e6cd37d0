"""Learning-rate schedules against transformers' schedulers, update by update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from jgrpo.grpo import OptimizerConfig, lr_multiplier, make_optimizer, warmup_steps

HF_SCHEDULERS = {
    "constant": lambda opt, w, n: transformers.get_constant_schedule(opt),
    "constant_with_warmup": lambda opt, w, n: transformers.get_constant_schedule_with_warmup(opt, w),
    "linear": lambda opt, w, n: transformers.get_linear_schedule_with_warmup(opt, w, n),
    "cosine": lambda opt, w, n: transformers.get_cosine_schedule_with_warmup(opt, w, n),
    "cosine_with_min_lr": lambda opt, w, n: transformers.get_cosine_with_min_lr_schedule_with_warmup(
        opt, w, n, min_lr_rate=0.1),
}


def hf_rates(schedule: str, lr: float, warmup: int, total: int, updates: int) -> list[float]:
    """The rate each optimizer update uses: the HF Trainer steps the scheduler after the optimizer."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = HF_SCHEDULERS[schedule](opt, warmup, total)
    rates = []
    for _ in range(updates):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("schedule", sorted(HF_SCHEDULERS))
def test_schedule_matches_transformers_step_for_step(schedule):
    cfg = OptimizerConfig(learning_rate=1e-6, schedule=schedule, total_steps=500, warmup_ratio=0.1)
    warmup = 0 if schedule == "constant" else 50  # open-rs: 10% of 500; HF's constant ignores warmup
    assert warmup_steps(cfg) == warmup
    want = hf_rates(schedule, 1e-6, warmup, 500, updates=510)
    got = cfg.learning_rate * np.asarray(jax.jit(jax.vmap(lambda s: lr_multiplier(s, cfg)))(jnp.arange(510)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-13)
    assert got[0] == (1e-6 if schedule == "constant" else 0.0)


def test_warmup_rounds_up_like_transformers():
    assert warmup_steps(OptimizerConfig(total_steps=25, warmup_ratio=0.1)) == 3
    assert warmup_steps(OptimizerConfig(total_steps=25, warmup_steps=7)) == 7


def test_adamw_applies_the_scheduled_rate_at_each_update():
    """With a constant gradient Adam's step is lr x 1 (bias-corrected), so each update's change
    of the weight reads off the rate that update used."""
    cfg = OptimizerConfig(learning_rate=0.5, schedule="cosine_with_min_lr", total_steps=12, warmup_steps=3,
                          max_grad_norm=None, eps=0.0)
    tx = make_optimizer(cfg)
    params = {"w": jnp.zeros((2, 2))}

    @jax.jit
    def update(params, state):
        updates, state = tx.update({"w": jnp.ones((2, 2))}, state, params)
        return jax.tree.map(jnp.add, params, updates), state

    state, used = tx.init(params), []
    for _ in range(14):
        new, state = update(params, state)
        used.append(float(params["w"][0, 0] - new["w"][0, 0]))
        params = new
    np.testing.assert_allclose(used, hf_rates("cosine_with_min_lr", 0.5, 3, 12, 14), rtol=1e-5, atol=1e-7)
