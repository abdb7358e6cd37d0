"""The one interface every rollout engine implements, and the result type they all return."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from jgrpo.choices import check_choice


def pow2_at_least(n: int, minimum: int = 1) -> int:
    """Padded sizes come from a handful of powers of two, so programs compile a handful of times."""
    return max(minimum, 1 << max(n - 1, 0).bit_length())


def stop_token_ids(model_dir: str | Path, tokenizer) -> list[int]:
    """Every id that ends a completion: config.json's, generation_config.json's and the
    tokenizer's (Hugging Face generate and vLLM stop at any of them). ValueError when none."""
    from jgrpo.model import Qwen2Config

    model_dir = Path(model_dir)
    ids = list(Qwen2Config.from_json_file(model_dir).eos_token_ids)
    generation_config = model_dir / "generation_config.json"
    if generation_config.is_file():
        eos = json.loads(generation_config.read_text()).get("eos_token_id")
        ids += eos if isinstance(eos, list) else [] if eos is None else [eos]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError(f"{model_dir}: no eos_token_id in config.json, generation_config.json or the tokenizer")
    return list(dict.fromkeys(int(i) for i in ids))


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


# Which distribution `Completion.logprobs` come from. "raw" (vLLM's default, `raw_logprobs`):
# log-softmax of the model's logits, before temperature, top-k/top-p and EOS suppression; also what
# open-rs's TRL used in its loss. "processed" (vLLM's `processed_logprobs`): the distribution the
# token was actually drawn from, after all of those (greedy: log-softmax without temperature).
LogprobsMode = Literal["raw", "processed"]
LOGPROBS_MODES = ("raw", "processed")


WEIGHT_SYNC_MODES = ("memory", "folder")  # vLLM: tensors handed over in this process, or a safetensors folder


def check_logprobs_mode(mode: str) -> None:
    check_choice("logprobs_mode", mode, LOGPROBS_MODES)


@dataclasses.dataclass(frozen=True)
class WeightSync:
    """What one weight sync cost: wall seconds, and the bytes handed to the engine (0 when the
    engine reads the trainer's live parameters)."""

    seconds: float
    bytes: int


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Returns len(prompts) * params.n completions, prompt by prompt."""

    def sync_weights(self, model) -> WeightSync:
        """Makes the next `generate` sample from `model`'s current parameters (a
        `Qwen2ForCausalLM`). Call it after every update."""


def decode_texts(tokenizer, token_ids: list[np.ndarray]) -> list[str]:
    """Texts without special tokens, decoded the same way whichever engine sampled the ids."""
    if tokenizer is None:
        return [""] * len(token_ids)
    return tokenizer.batch_decode([ids.tolist() for ids in token_ids], skip_special_tokens=True)
