"""Rollout engines behind one interface: the native JAX sampler and vLLM.

base        SamplingParams, Completion, the RolloutEngine protocol
draw        drawing a token from logits (greedy, temperature, top-k, top-p) without sorting the vocabulary
jax_engine  JaxEngine: prefill + jit-compiled decode loop over a static KV cache
vllm_engine VllmEngine: vLLM in this process, weight sync in memory or through a folder
"""

from __future__ import annotations

from jgrpo.sampling.base import (LOGPROBS_MODES, Completion, LogprobsMode, RolloutEngine, SamplingParams,
                                 WEIGHT_SYNC_MODES, WeightSync, pow2_at_least, stop_token_ids)
from jgrpo.sampling.jax_engine import JaxEngine

ENGINES = ("jax", "vllm")


def make_engine(kind: str, model, *, eos_token_ids, tokenizer=None, **options) -> RolloutEngine:
    """A rollout engine sampling from `model` (a Qwen2ForCausalLM). options go to the engine's
    constructor: JaxEngine's, or VllmEngine.from_model's (vLLM is imported only here; it needs
    model_path, the model's HF folder, or export_dir to write one)."""
    if kind == "jax":
        return JaxEngine(model, eos_token_ids=eos_token_ids, tokenizer=tokenizer, **options)
    if kind == "vllm":
        from jgrpo.sampling.vllm_engine import VllmEngine

        return VllmEngine.from_model(model, eos_token_ids=eos_token_ids, tokenizer=tokenizer, **options)
    raise ValueError(f"unknown rollout engine {kind!r}; choose one of {ENGINES}")


__all__ = ["Completion", "ENGINES", "JaxEngine", "LOGPROBS_MODES", "LogprobsMode", "RolloutEngine",
           "SamplingParams", "WEIGHT_SYNC_MODES", "WeightSync", "make_engine", "pow2_at_least", "stop_token_ids"]
