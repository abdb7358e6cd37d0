"""Settings of the GRPO loss and of the optimizer, checked when built so a typo fails at start-up."""

from __future__ import annotations

import dataclasses

from jgrpo.choices import check_choice

LOSS_TYPES = ("bnpo", "grpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_min_lr")  # HF names


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The GRPO objective. Defaults are the open-rs reproduction (TRL 0.16 as they ran it)."""

    loss_type: str = "bnpo"  # how token losses are averaged (TRL's loss types)
    beta: float = 0.04  # k3 KL to the frozen reference; 0 means no reference forward at all
    epsilon_low: float = 0.2  # clip range below 1 of the probability ratio
    epsilon_high: float = 0.2  # clip range above 1 (DAPO's clip-higher when larger)
    num_iterations: int = 1  # > 1 reuses one batch for several updates and needs stored old log-probs
    # Logits are divided by this before log_softmax. open-rs used raw logits (1.0) although it sampled
    # at 0.7; later TRL divides by the sampling temperature.
    temperature: float = 1.0
    num_generations: int = 6  # completions per prompt, contiguous in the batch
    scale_rewards: str = "group"  # divide advantages by the reward std of the group, the batch, or not
    mask_truncated_completions: bool = False  # drop completions that hit max_completion_length from the loss
    # TRL's vllm_importance_sampling_correction: per-token weight min(exp(old - sampler), cap). None: off.
    importance_sampling_cap: float | None = None
    micro_batch_size: int = 6  # completions per accumulation step, over all devices together
    # bnpo normalises the token mean over groups of this many consecutive completions (open-rs: one
    # device's micro-batch of 6 = one prompt's completions). None: num_generations.
    bnpo_group_size: int | None = None
    # dr_grpo divides by sequences x this. None: the padded completion width of the batch.
    max_completion_length: int | None = None
    logprob_chunk_size: int = 256  # completion positions per lm-head chunk; bounds the logits memory

    def __post_init__(self):
        check_choice("loss_type", self.loss_type, LOSS_TYPES)
        check_choice("scale_rewards", self.scale_rewards, SCALE_REWARDS)
        if self.beta < 0 or self.epsilon_low < 0 or self.epsilon_high < 0:
            raise ValueError("beta, epsilon_low and epsilon_high must be >= 0")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.importance_sampling_cap is not None and self.importance_sampling_cap <= 0:
            raise ValueError(f"importance_sampling_cap must be > 0, got {self.importance_sampling_cap}")
        for name in ("num_iterations", "num_generations", "micro_batch_size", "logprob_chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.micro_batch_size % self.group_size:
            raise ValueError(f"micro_batch_size {self.micro_batch_size} is not a multiple of the bnpo group "
                             f"size {self.group_size}")

    @property
    def group_size(self) -> int:
        """Completions per bnpo normalisation group."""
        return self.bnpo_group_size or self.num_generations


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with global-norm clipping and an HF-style schedule. Defaults: open-rs."""

    learning_rate: float = 1e-6  # peak learning rate
    b1: float = 0.9  # AdamW's beta1
    b2: float = 0.999  # AdamW's beta2
    eps: float = 1e-8  # AdamW's epsilon
    weight_decay: float = 0.0  # decoupled (AdamW) weight decay
    max_grad_norm: float | None = 1.0  # global-norm gradient clipping; null: off
    schedule: str = "cosine_with_min_lr"  # transformers' scheduler names
    total_steps: int = 500
    # Either a fraction of total_steps (rounded up, as transformers does) or a step count.
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    min_lr_rate: float = 0.1  # cosine_with_min_lr only
    num_cycles: float = 0.5  # cosine schedules

    def __post_init__(self):
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        for name in ("learning_rate", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("b1", "b2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        if not 0 <= self.min_lr_rate <= 1:
            raise ValueError(f"min_lr_rate must be in [0, 1], got {self.min_lr_rate}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
