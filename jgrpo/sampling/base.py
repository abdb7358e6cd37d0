"""The one interface every rollout engine implements, and the result type they all return."""

from __future__ import annotations

import dataclasses
from typing import Iterable, Protocol

import numpy as np


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by every engine. temperature 0 means greedy."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 switches top-k off
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # EOS is suppressed until this many tokens exist
    seed: int = 0

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingParams.top_k must be >= 0, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError("SamplingParams.min_new_tokens must be in [0, max_new_tokens]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclasses.dataclass
class Completion:
    """One sampled completion. Completions of one prompt are contiguous in an engine's output."""

    prompt_index: int
    token_ids: np.ndarray  # int32 [length], ends with the EOS id when finish_reason == "stop"
    logprobs: np.ndarray  # float32 [length], the sampler's log-prob of each token
    finish_reason: str  # "stop" (an EOS id was sampled) or "length" (max_new_tokens reached)
    text: str  # decoded without special tokens


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Returns len(prompts) * params.n completions, prompt by prompt."""

    def sync_weights(self, named_arrays: Iterable[tuple[str, np.ndarray]]) -> float:
        """Loads new weights (Hugging Face names); returns the seconds it took."""
