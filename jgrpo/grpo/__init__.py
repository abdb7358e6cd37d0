"""The GRPO core: per-token log-probs, advantages, the loss variants and one jitted, sharded update."""

from jgrpo.grpo.advantages import group_advantages
from jgrpo.grpo.batch import RolloutBatch
from jgrpo.grpo.config import LossConfig, OptimizerConfig
from jgrpo.grpo.logprobs import completion_logprobs, token_logprobs
from jgrpo.grpo.losses import AGGREGATIONS, aggregate, token_terms
from jgrpo.grpo.optimizer import make_optimizer
from jgrpo.grpo.schedule import lr_multiplier, make_schedule, schedule_extends, warmup_steps
from jgrpo.grpo.train_step import (TrainState, abstract_train_state, init_train_state, make_logprob_fn,
                                   make_train_step)

__all__ = [
    "AGGREGATIONS", "LossConfig", "OptimizerConfig", "RolloutBatch", "TrainState",
    "abstract_train_state", "aggregate", "completion_logprobs", "group_advantages", "init_train_state", "lr_multiplier",
    "make_logprob_fn", "make_optimizer", "make_schedule", "make_train_step", "schedule_extends", "token_logprobs", "token_terms",
    "warmup_steps",
]
