"""GRPO loss variants and advantages against the independent PyTorch reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jgrpo.grpo import AGGREGATIONS, LossConfig, RolloutBatch, aggregate, group_advantages, token_terms
from tests import test_grpo_reference as ref

B, C, G = 8, 6, 4

SETTINGS = {
    "plain": dict(),
    "kl": dict(beta=0.04),
    "old_logps": dict(num_iterations=2, epsilon_high=0.28),
    "kl_old_is_truncated": dict(beta=0.1, num_iterations=2, importance_sampling_cap=1.5,
                                mask_truncated_completions=True, epsilon_low=0.1),
}


def random_inputs(seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, C + 1, size=B)
    lengths[2] = C
    mask = (np.arange(C)[None] < lengths[:, None]).astype(np.float32)
    logps = np.log(rng.uniform(0.05, 0.95, size=(B, C))).astype(np.float32)
    return dict(
        logps=logps, mask=mask,
        advantages=rng.normal(size=B).astype(np.float32),
        old=(logps + rng.normal(scale=0.3, size=(B, C))).astype(np.float32),  # ratios on both sides of the clip
        ref=(logps + rng.normal(scale=0.5, size=(B, C))).astype(np.float32),
        sampler=(logps + rng.normal(scale=0.4, size=(B, C))).astype(np.float32),
        truncated=lengths == C,
    )


def jax_loss_fn(x, cfg: LossConfig):
    batch = RolloutBatch(prompt_ids=None, prompt_mask=None, completion_ids=None,
                         completion_mask=jnp.asarray(x["mask"]), advantages=jnp.asarray(x["advantages"]),
                         rewards=None, truncated=jnp.asarray(x["truncated"]))
    mask = batch.loss_mask(cfg.mask_truncated_completions)

    def loss(logps):
        terms = token_terms(logps, batch.advantages, cfg,
                            old_logps=jnp.asarray(x["old"]) if cfg.num_iterations > 1 else None,
                            ref_logps=jnp.asarray(x["ref"]) if cfg.beta > 0 else None,
                            sampler_logps=jnp.asarray(x["sampler"]) if cfg.importance_sampling_cap else None)
        return aggregate(terms.loss, mask, cfg)

    return loss


def torch_loss_and_grad(x, cfg: LossConfig):
    t = {k: torch.tensor(v) for k, v in x.items()}
    logps = t["logps"].clone().requires_grad_(True)
    mask = t["mask"] * (~t["truncated"])[:, None] if cfg.mask_truncated_completions else t["mask"]
    per_token = ref.token_loss(logps, t["advantages"], beta=cfg.beta, eps_low=cfg.epsilon_low,
                               eps_high=cfg.epsilon_high, old=t["old"] if cfg.num_iterations > 1 else None,
                               ref=t["ref"], sampler=t["sampler"], is_cap=cfg.importance_sampling_cap)
    loss = ref.aggregate(per_token, mask, cfg.loss_type, group_size=cfg.group_size, max_len=cfg.max_completion_length)
    loss.backward()
    return loss.item(), logps.grad.numpy()


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("loss_type", sorted(AGGREGATIONS))
def test_loss_and_grad_match_torch_reference(loss_type, setting):
    cfg = LossConfig(loss_type=loss_type, num_generations=G, micro_batch_size=G, max_completion_length=10,
                     **SETTINGS[setting])
    x = random_inputs()
    loss, grad = jax.value_and_grad(jax_loss_fn(x, cfg))(jnp.asarray(x["logps"]))
    want_loss, want_grad = torch_loss_and_grad(x, cfg)
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-5, atol=1e-7)
    assert np.abs(want_grad).sum() > 0


@pytest.mark.parametrize("loss_type", sorted(AGGREGATIONS))
def test_micro_batch_numerators_add_up_to_the_batch_loss(loss_type):
    cfg = LossConfig(loss_type=loss_type, num_generations=G, micro_batch_size=G, beta=0.04)
    x = random_inputs(seed=1)
    agg = AGGREGATIONS[loss_type]
    terms = token_terms(jnp.asarray(x["logps"]), jnp.asarray(x["advantages"]), cfg, ref_logps=jnp.asarray(x["ref"]))
    mask = jnp.asarray(x["mask"])
    denominator = agg.denominator(mask, cfg)
    split = sum(agg.numerator(terms.loss[i:i + G], mask[i:i + G], cfg) for i in range(0, B, G)) / denominator
    np.testing.assert_allclose(float(split), float(aggregate(terms.loss, mask, cfg)), rtol=1e-6)


def test_bnpo_is_open_rs_mean_of_group_token_means():
    x = random_inputs(seed=2)
    cfg = LossConfig(loss_type="bnpo", num_generations=G, micro_batch_size=G, beta=0.0)
    loss = jax_loss_fn(x, cfg)(jnp.asarray(x["logps"]))
    adv = x["advantages"][:, None] * np.ones((1, C))
    means = [(-adv[i:i + G] * x["mask"][i:i + G]).sum() / x["mask"][i:i + G].sum() for i in range(0, B, G)]
    np.testing.assert_allclose(float(loss), np.mean(means), rtol=1e-6)


def test_group_advantages():
    rewards = np.array([1.0, 0.0, 2.0, 1.0, 3.0, 3.0, 3.0, 3.0], np.float32)
    got = np.asarray(group_advantages(rewards, 4))
    first = rewards[:4]
    np.testing.assert_allclose(got[:4], (first - first.mean()) / (first.std(ddof=1) + 1e-4), rtol=1e-6)
    np.testing.assert_array_equal(got[4:], 0.0)
    batch = np.asarray(group_advantages(rewards, 4, "batch"))
    centred = rewards - np.repeat(rewards.reshape(2, 4).mean(1), 4)
    np.testing.assert_allclose(batch, centred / (rewards.std(ddof=1) + 1e-4), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(group_advantages(rewards, 4, "none")), centred, rtol=1e-6)


@pytest.mark.parametrize("bad", [dict(loss_type="sapo"), dict(scale_rewards="prompt"), dict(temperature=0.0),
                                 dict(micro_batch_size=5, num_generations=6)])
def test_bad_loss_config_is_refused(bad):
    with pytest.raises(ValueError):
        LossConfig(**bad)
