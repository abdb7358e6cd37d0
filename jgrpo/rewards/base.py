"""What every reward function is: ``f(completions, **columns) -> list[float]``.

``completions`` are decoded completion texts (special tokens removed); ``columns`` are the
batch's dataset columns, each a list aligned with ``completions`` (``problem``,
``answer``, ``solution`` when the data has one, ``prompt``), plus what the trainer knows
of each completion: ``completion_token_lengths`` and ``finish_reason`` ("stop" or "length"). A function may return ``None`` for
a sample it does not apply to. Built-in rewards that count events (grader timeouts,
unparseable golds) return a :class:`RewardScores`, which is still a list of floats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

RewardFunc = Callable[..., Sequence[float | None]]

FINISH_REASON_COLUMN = "finish_reason"


class RewardScores(list):
    """A list of rewards carrying ``metrics``: event counts to log next to the rewards."""

    def __init__(self, values: Iterable[float], metrics: Mapping[str, float] | None = None):
        super().__init__(values)
        self.metrics = dict(metrics or {})


def column(
    columns: Mapping[str, Sequence], name: str, n: int, reward: str, hint: str = ""
) -> Sequence:
    """The column ``name``, checked to be present and aligned with the ``n`` completions."""
    if name not in columns:
        raise ValueError(
            f"reward {reward!r} needs column {name!r}; got columns {sorted(columns)}{hint}"
        )
    values = columns[name]
    if len(values) != n:
        raise ValueError(
            f"reward {reward!r}: column {name!r} has {len(values)} entries for {n} completions"
        )
    return values
