"""N-gram repetition penalty (open-r1's ``repetition_penalty``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RepetitionOptions:
    ngram_size: int = 3
    max_penalty: float = -1.0


class RepetitionReward:
    """``max_penalty`` x (share of repeated word n-grams), in [max_penalty, 0].

    Words are the lower-cased completion split on whitespace; the share is 1 - distinct
    n-grams / all n-grams. Completions with fewer than ``ngram_size`` words score 0.
    """

    __name__ = "repetition"

    def __init__(self, options: RepetitionOptions):
        if options.max_penalty > 0:
            raise ValueError(f"repetition max_penalty must be <= 0, got {options.max_penalty}")
        if options.ngram_size < 1:
            raise ValueError(f"repetition ngram_size must be >= 1, got {options.ngram_size}")
        self.options = options

    def __call__(self, completions: list[str], **columns) -> list[float]:
        return [self._score(c) for c in completions]

    def _score(self, completion: str) -> float:
        words = completion.lower().split()
        n = self.options.ngram_size
        if len(words) < n:
            return 0.0
        ngrams = list(zip(*(words[i:] for i in range(n))))
        repeated_share = 1.0 - len(set(ngrams)) / len(ngrams)
        return repeated_share * self.options.max_penalty
