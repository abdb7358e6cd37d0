"""open-rs's accuracy reward: is the completion's boxed answer equal to the gold?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jgrpo.grading import Grader, Verdict, count_verdicts, normalize_gold
from jgrpo.rewards.base import RewardScores, column


@dataclass(frozen=True)
class AccuracyOptions:
    """How the correctness test used by ``accuracy`` and ``cosine`` finds its gold.

    ``gold_column`` defaults to open-rs's ``solution`` (a worked solution whose ``\\boxed``
    answer math-verify extracts). For a bare answer column such as ``answer``, set
    ``normalize_gold=True``: the answer is cleaned and wrapped in ``\\boxed{}``
    (:func:`jgrpo.grading.normalize_gold`). A bare answer left unwrapped often fails to
    parse, and then every completion gets ``unparseable_gold_reward``: 1.0, as in open-rs.
    """

    gold_column: str = "solution"
    normalize_gold: bool = False
    unparseable_gold_reward: float = 1.0


def grade(
    reward: str, options: AccuracyOptions, grader: Grader, completions: Sequence[str], columns
) -> list[Verdict]:
    golds = column(
        columns,
        options.gold_column,
        len(completions),
        reward,
        hint=" (for a bare answer column use gold_column='answer', normalize_gold=True)",
    )
    if options.normalize_gold:
        golds = [normalize_gold(g) for g in golds]
    return grader.grade_open_rs(completions, golds, reward)


def verdict_metrics(verdicts: Sequence[Verdict]) -> dict[str, float]:
    counts = count_verdicts(verdicts)
    return {
        "gold_unparseable": counts[Verdict.GOLD_UNPARSEABLE],
        "grader_timeouts": counts[Verdict.TIMEOUT],
        "grader_errors": counts[Verdict.ERROR],
        "grader_crashes": counts[Verdict.CRASHED],
    }


class AccuracyReward:
    """1.0 if correct, else 0.0; a grader timeout or error gives 0.0 (and is counted).

    An unparseable gold gives ``options.unparseable_gold_reward`` (open-rs: 1.0).
    """

    __name__ = "accuracy"

    def __init__(self, options: AccuracyOptions, grader: Grader):
        self.options = options
        self.grader = grader

    def __call__(self, completions: list[str], **columns) -> RewardScores:
        verdicts = grade(self.__name__, self.options, self.grader, completions, columns)
        values = [
            1.0
            if v is Verdict.CORRECT
            else self.options.unparseable_gold_reward
            if v is Verdict.GOLD_UNPARSEABLE
            else 0.0
            for v in verdicts
        ]
        return RewardScores(values, verdict_metrics(verdicts))
