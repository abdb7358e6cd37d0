"""An independent PyTorch GRPO, written from the formulas in OPEN-RS-REFERENCE.md / TRL, that the
JAX implementation is checked against (and that scripts/bench_update.py races). The tests in this
file check the reference itself on numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import torch
import transformers


def token_loss(logp, adv, *, beta=0.0, eps_low=0.2, eps_high=0.2, old=None, ref=None, sampler=None, is_cap=None):
    old = logp.detach() if old is None else old
    ratio = torch.exp(logp - old)
    a = adv[:, None]
    loss = -torch.min(ratio * a, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * a)
    if is_cap is not None:
        loss = loss * torch.clamp(torch.exp(old - sampler), max=is_cap)
    if beta:
        loss = loss + beta * (torch.exp(ref - logp) - (ref - logp) - 1)
    return loss


def aggregate(loss, mask, loss_type, *, group_size=None, max_len=None):
    """bnpo as open-rs ran it: each device micro-batch (= group_size completions) takes its token
    mean, then the mean over micro-batches."""
    if loss_type == "bnpo":
        means = [(loss[i:i + group_size] * mask[i:i + group_size]).sum() / mask[i:i + group_size].sum().clamp(min=1)
                 for i in range(0, loss.shape[0], group_size)]
        return torch.stack(means).mean()
    if loss_type == "grpo":
        return ((loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if loss_type == "dr_grpo":
        return (loss * mask).sum() / (loss.shape[0] * (max_len or loss.shape[1]))
    if loss_type == "dapo":
        return (loss * mask).sum() / mask.sum().clamp(min=1)
    raise ValueError(loss_type)


def completion_logprobs(hf, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature=1.0):
    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
    logits = logits[:, prompt_ids.shape[1] - 1:-1] / temperature
    logp = torch.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, completion_ids[..., None])[..., 0], entropy


class TorchGRPO:
    """The update as TRL + the HF Trainer do it: loss, backward, clip_grad_norm_, AdamW (no decay on
    biases and norms), then the LR scheduler steps."""

    def __init__(self, hf, *, lr, loss_type="bnpo", beta=0.0, eps=0.2, group_size=None, max_grad_norm=1.0,
                 weight_decay=0.0, warmup_steps=0, total_steps=100, min_lr_rate=0.1):
        self.hf, self.loss_type, self.beta, self.eps = hf, loss_type, beta, eps
        self.group_size, self.max_grad_norm = group_size, max_grad_norm
        decay = [p for p in hf.parameters() if p.ndim > 1]
        no_decay = [p for p in hf.parameters() if p.ndim <= 1]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.sched = transformers.get_cosine_with_min_lr_schedule_with_warmup(
            self.opt, warmup_steps, total_steps, min_lr_rate=min_lr_rate)

    def step(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        lr = self.sched.get_last_lr()[0]
        logp, _ = completion_logprobs(self.hf, b["prompt_ids"], b["prompt_mask"], b["completion_ids"],
                                      b["completion_mask"])
        loss = aggregate(token_loss(logp, b["advantages"], beta=self.beta, eps_low=self.eps, eps_high=self.eps,
                                    ref=b.get("ref_logps")),
                         b["completion_mask"].float(), self.loss_type, group_size=self.group_size)
        self.opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.hf.parameters(), self.max_grad_norm)
        self.opt.step()
        self.sched.step()
        return {"loss": loss.item(), "grad_norm": grad_norm.item(), "learning_rate": lr}


def test_token_loss_by_hand():
    logp = torch.tensor([[math.log(0.5), math.log(0.25)]])
    old = torch.tensor([[math.log(0.25), math.log(0.25)]])  # ratios 2 and 1
    ref = torch.tensor([[math.log(0.5), math.log(0.5)]])
    loss = token_loss(logp, torch.tensor([1.0]), beta=0.1, old=old, ref=ref)
    # token 0: ratio 2 clipped to 1.2 -> -1.2; KL(ref = logp) = 0
    # token 1: ratio 1 -> -1; KL: d = log 2, e^d - d - 1 = 1 - log 2
    np.testing.assert_allclose(loss.numpy(), [[-1.2, -1.0 + 0.1 * (1 - math.log(2))]], rtol=1e-6)


def test_aggregations_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(loss, mask, "dapo").item() == 10 / 4
    assert aggregate(loss, mask, "grpo").item() == (2 + 4) / 2
    assert aggregate(loss, mask, "dr_grpo", max_len=5).item() == 10 / 10
    assert aggregate(loss, mask, "bnpo", group_size=1).item() == (2 + 4) / 2
    assert aggregate(loss, mask, "bnpo", group_size=2).item() == 10 / 4
