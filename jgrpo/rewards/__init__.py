"""Reward functions for GRPO on maths: open-rs's, upstream open-r1's, and our fixes.

Use :func:`build_reward_fn` with names from :data:`REWARD_NAMES` (or ``"module:function"``).
"""

from jgrpo.rewards.accuracy import AccuracyOptions, AccuracyReward
from jgrpo.rewards.base import FINISH_REASON_COLUMN, RewardFunc, RewardScores
from jgrpo.rewards.cosine import TOKEN_LENGTHS_COLUMN, CosineOptions, CosineReward, cosine_scaled
from jgrpo.rewards.format import format_open_r1_reward, format_reward, tag_count_reward
from jgrpo.rewards.language import LanguageOptions, LanguageReward, letter_scripts
from jgrpo.rewards.registry import (
    REWARD_NAMES,
    RewardFn,
    RewardOptions,
    RewardOutput,
    build_reward_fn,
)
from jgrpo.rewards.repetition import RepetitionOptions, RepetitionReward

__all__ = [
    "FINISH_REASON_COLUMN",
    "REWARD_NAMES",
    "TOKEN_LENGTHS_COLUMN",
    "AccuracyOptions",
    "AccuracyReward",
    "CosineOptions",
    "CosineReward",
    "LanguageOptions",
    "LanguageReward",
    "RepetitionOptions",
    "RepetitionReward",
    "RewardFn",
    "RewardFunc",
    "RewardOptions",
    "RewardOutput",
    "RewardScores",
    "build_reward_fn",
    "cosine_scaled",
    "format_open_r1_reward",
    "format_reward",
    "letter_scripts",
    "tag_count_reward",
]
