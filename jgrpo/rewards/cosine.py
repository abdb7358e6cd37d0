"""open-rs's cosine reward: correctness scaled by completion length."""

from __future__ import annotations

import math
from dataclasses import dataclass

from jgrpo.grading import Grader, Verdict
from jgrpo.rewards.accuracy import AccuracyOptions, grade, verdict_metrics
from jgrpo.rewards.base import RewardScores, column

TOKEN_LENGTHS_COLUMN = "completion_token_lengths"


@dataclass(frozen=True)
class CosineOptions:
    """R = a + (b - a)(1 + cos(pi p)) / 2 with p = length / max_len.

    Correct: a = ``min_value_correct``, b = ``max_value_correct``; wrong: a =
    ``max_value_wrong``, b = ``min_value_wrong`` (open-r1's names: the "min"/"max" values
    are the rewards at the longest/shortest length). With the defaults (open-rs, Exp3) a
    correct answer earns 1.0 at length 0 down to 0.5 at ``max_len``, a wrong one 0.0 down
    to -0.5.

    open-rs measures length in characters and does not clip p, so past ``max_len``
    characters the reward oscillates (a wrong answer of 2 x ``max_len`` characters scores
    0.0 again). ``corrected=True`` is our fix: length in tokens (the batch column
    ``completion_token_lengths``, which the trainer passes) and p clipped to [0, 1].
    """

    max_len: int = 3584
    min_value_wrong: float = 0.0
    max_value_wrong: float = -0.5
    min_value_correct: float = 0.5
    max_value_correct: float = 1.0
    corrected: bool = False


def cosine_scaled(length: float, correct: bool, options: CosineOptions) -> float:
    progress = length / options.max_len
    if options.corrected:
        progress = min(max(progress, 0.0), 1.0)
    if correct:
        start, end = options.max_value_correct, options.min_value_correct
    else:
        start, end = options.min_value_wrong, options.max_value_wrong
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


class CosineReward:
    """Cosine-scaled correctness (see :class:`CosineOptions`).

    An unparseable gold gives ``accuracy.unparseable_gold_reward`` (open-rs: 1.0); a grader
    timeout or error is scored as a wrong answer and counted.
    """

    __name__ = "cosine"

    def __init__(self, options: CosineOptions, accuracy: AccuracyOptions, grader: Grader):
        if options.max_len <= 0:
            raise ValueError(f"cosine max_len must be positive, got {options.max_len}")
        self.options = options
        self.accuracy = accuracy
        self.grader = grader

    def __call__(self, completions: list[str], **columns) -> RewardScores:
        if self.options.corrected:
            lengths = column(
                columns,
                TOKEN_LENGTHS_COLUMN,
                len(completions),
                self.__name__,
                hint=" (corrected cosine measures length in tokens)",
            )
        else:
            lengths = [len(c) for c in completions]
        verdicts = grade(self.__name__, self.accuracy, self.grader, completions, columns)
        values = [
            self.accuracy.unparseable_gold_reward
            if v is Verdict.GOLD_UNPARSEABLE
            else cosine_scaled(n, v is Verdict.CORRECT, self.options)
            for v, n in zip(verdicts, lengths)
        ]
        return RewardScores(values, verdict_metrics(verdicts))
