"""Rewards chosen by name (or ``"module:function"``), weighted and summed."""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from jgrpo.grading import Grader, GradingOptions
from jgrpo.rewards.accuracy import AccuracyOptions, AccuracyReward
from jgrpo.rewards.base import RewardFunc
from jgrpo.rewards.cosine import CosineOptions, CosineReward
from jgrpo.rewards.format import format_open_r1_reward, format_reward, tag_count_reward
from jgrpo.rewards.language import LanguageOptions, LanguageReward
from jgrpo.rewards.repetition import RepetitionOptions, RepetitionReward


@dataclass(frozen=True)
class RewardOptions:
    """Options of the built-in rewards, and of the grader pool that ``accuracy`` and
    ``cosine`` share."""

    accuracy: AccuracyOptions = field(default_factory=AccuracyOptions)
    cosine: CosineOptions = field(default_factory=CosineOptions)
    repetition: RepetitionOptions = field(default_factory=RepetitionOptions)
    language: LanguageOptions = field(default_factory=LanguageOptions)
    grading: GradingOptions = field(default_factory=GradingOptions)


GRADER_FAULTS = ("grader_timeouts", "grader_errors", "grader_crashes")  # also summed over functions

_Factory = Callable[[RewardOptions, Callable[[], Grader]], RewardFunc]

_BUILTINS: dict[str, _Factory] = {
    "format": lambda options, grader: format_reward,
    "format_open_r1": lambda options, grader: format_open_r1_reward,
    "tag_count": lambda options, grader: tag_count_reward,
    "accuracy": lambda options, grader: AccuracyReward(options.accuracy, grader()),
    "cosine": lambda options, grader: CosineReward(options.cosine, options.accuracy, grader()),
    "repetition": lambda options, grader: RepetitionReward(options.repetition),
    "language": lambda options, grader: LanguageReward(options.language),
}

REWARD_NAMES: tuple[str, ...] = tuple(sorted(_BUILTINS))


@dataclass(frozen=True)
class RewardOutput:
    """``total``: weighted sum per completion (a function's ``None`` counts as 0);
    ``per_function``: unweighted rewards, NaN where a function returned ``None``;
    ``metrics``: ``rewards/<name>/mean`` and ``/std``, the functions' counters as
    ``rewards/<name>/<counter>``, ``rewards/total/mean`` and ``/std``, and
    ``rewards/grader_timeouts`` / ``grader_errors`` / ``grader_crashes`` summed over functions."""

    total: np.ndarray
    per_function: dict[str, np.ndarray]
    metrics: dict[str, float]


class RewardFn:
    """Computes every reward function on a batch and their weighted total."""

    def __init__(
        self,
        functions: Mapping[str, RewardFunc],
        weights: Sequence[float],
        owned_grader: Grader | None = None,
    ):
        if len(weights) != len(functions):
            raise ValueError(f"got {len(weights)} reward weights for {len(functions)} rewards")
        self.functions = dict(functions)
        self.weights = dict(zip(self.functions, (float(w) for w in weights)))
        self._owned_grader = owned_grader

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.functions)

    def __call__(self, completions: Sequence[str], **columns: Sequence) -> RewardOutput:
        completions = list(completions)
        n = len(completions)
        per_function: dict[str, np.ndarray] = {}
        metrics: dict[str, float] = {f"rewards/{key}": 0.0 for key in GRADER_FAULTS}
        total = np.zeros(n)
        for name, fn in self.functions.items():
            scores = fn(completions, **columns)
            values = _as_array(name, scores, n)
            per_function[name] = values
            # None (NaN) abstains and counts 0, as TRL's nansum; an infinite reward stays infinite,
            # so the update it would poison is skipped (jgrpo.grpo.train_step).
            total += self.weights[name] * np.nan_to_num(values, nan=0.0, posinf=np.inf, neginf=-np.inf)
            metrics[f"rewards/{name}/mean"] = _nan_stat(np.nanmean, values)
            metrics[f"rewards/{name}/std"] = _nan_stat(np.nanstd, values)
            for key, count in getattr(scores, "metrics", {}).items():
                metrics[f"rewards/{name}/{key}"] = float(count)
                if key in GRADER_FAULTS:
                    metrics[f"rewards/{key}"] += float(count)
        metrics["rewards/total/mean"] = float(total.mean()) if n else math.nan
        metrics["rewards/total/std"] = float(total.std()) if n else math.nan
        return RewardOutput(total=total, per_function=per_function, metrics=metrics)

    def close(self) -> None:
        """Stops the grader workers if this object started them."""
        if self._owned_grader is not None:
            self._owned_grader.close()

    def __enter__(self) -> RewardFn:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def build_reward_fn(
    names: Sequence[str],
    weights: Sequence[float] | None = None,
    options: RewardOptions | None = None,
    grader: Grader | None = None,
) -> RewardFn:
    """Reward functions by name with their weights (default 1.0 each).

    A name is a built-in (:data:`REWARD_NAMES`) or ``"module:function"`` for a user
    function ``f(completions, **columns) -> list[float]``. ``accuracy`` and ``cosine`` grade
    in ``grader``'s worker pool, or in one the returned object starts and owns (close it
    with ``close()``).
    """
    options = options or RewardOptions()
    weights = [1.0] * len(names) if weights is None else list(weights)
    if len(weights) != len(names):
        raise ValueError(
            f"got {len(weights)} reward weights for {len(names)} rewards {list(names)}"
        )
    owned: list[Grader] = []

    def get_grader() -> Grader:
        if grader is not None:
            return grader
        if not owned:
            owned.append(Grader(options.grading))
        return owned[0]

    functions: dict[str, RewardFunc] = {}
    for spec in names:
        name, fn = _resolve(spec, options, get_grader)
        if name in functions:
            raise ValueError(f"reward {name!r} is listed twice")
        functions[name] = fn
    return RewardFn(functions, weights, owned_grader=owned[0] if owned else None)


def _resolve(spec: str, options: RewardOptions, grader: Callable[[], Grader]):
    if spec in _BUILTINS:
        return spec, _BUILTINS[spec](options, grader)
    if ":" in spec:
        return _import_reward(spec)
    raise ValueError(
        f"unknown reward {spec!r}; known rewards: {', '.join(REWARD_NAMES)} "
        "(or a user function as 'module:function')"
    )


def _import_reward(spec: str) -> tuple[str, RewardFunc]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"reward {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"reward {spec!r}: module {module_name!r} has no function {attr!r}")
    return attr, fn


def _as_array(name: str, scores: Sequence[float | None], n: int) -> np.ndarray:
    if len(scores) != n:
        raise ValueError(f"reward {name!r} returned {len(scores)} values for {n} completions")
    values = np.empty(n)
    for i, score in enumerate(scores):
        if score is None:
            values[i] = math.nan
        elif isinstance(score, numbers.Real):
            values[i] = float(score)
        else:
            raise ValueError(
                f"reward {name!r} returned {score!r} (a {type(score).__name__}) at {i}"
            )
    return values


def _nan_stat(stat, values: np.ndarray) -> float:
    return float(stat(values)) if np.isfinite(values).any() else math.nan
