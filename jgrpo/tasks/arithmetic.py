"""Single-digit addition ("3+4=" -> "7"), the CPU default's task.

A 2-core machine cannot fine-tune a real reasoning model, but it can show GRPO doing what it does:
a tiny random Qwen2 starts at chance and learns the addition table from rewards alone, with no
supervised warm start. Everything a real run has is exercised: a real Hugging Face checkpoint
folder with a byte-level BPE tokenizer that transformers and vLLM load, the prompt batcher, reward
functions by import path, the sampler, the update, checkpoints and the HF export.
"""

from __future__ import annotations

import json
from pathlib import Path

from flax import nnx

from jgrpo.data import Example, Prompt
from jgrpo.model import Qwen2Config, Qwen2ForCausalLM

ALPHABET = "0123456789+="
EOS_TOKEN = "<|endoftext|>"
EOS_ID = len(ALPHABET)
VOCAB_SIZE = len(ALPHABET) + 1  # every id is a real token: nothing the reward cannot see
# Room for evaluating the export on the benchmarks (RoPE has no position parameters, so this costs
# nothing); the task itself needs 16 tokens.
MAX_POSITIONS = 2048


def examples(max_operand: int) -> list[Example]:
    """Every problem a + b with 0 <= a, b <= max_operand, in a fixed order."""
    return [Example(id=f"{a}+{b}", problem=f"{a}+{b}=", answer=str(a + b))
            for a in range(max_operand + 1) for b in range(max_operand + 1)]


def encode(tokenizer, problems: list[Example]) -> list[Prompt]:
    """Prompts are the bare problem text: no chat template, no system prompt."""
    ids = tokenizer([e.problem for e in problems], add_special_tokens=False)["input_ids"]
    return [Prompt(e, e.problem, tuple(i)) for e, i in zip(problems, ids)]


def write_tokenizer(folder: Path) -> None:
    """A byte-level BPE tokenizer (no merges) over the alphabet: the kind of tokenizer transformers
    uses for every qwen2 folder, so the exported checkpoint loads there and in vLLM unchanged."""
    vocab = {c: i for i, c in enumerate(ALPHABET)}
    vocab[EOS_TOKEN] = EOS_ID
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    special = {"content": EOS_TOKEN, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
               "single_word": False}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": EOS_TOKEN, "pad_token": EOS_TOKEN,
        "bos_token": None, "unk_token": None, "added_tokens_decoder": {str(EOS_ID): special},
        "model_max_length": MAX_POSITIONS}))


def model_config(hidden_size: int, intermediate_size: int, num_hidden_layers: int, num_attention_heads: int,
                 num_key_value_heads: int) -> Qwen2Config:
    return Qwen2Config(vocab_size=VOCAB_SIZE, hidden_size=hidden_size, intermediate_size=intermediate_size,
                       num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                       num_key_value_heads=num_key_value_heads, max_position_embeddings=MAX_POSITIONS,
                       tie_word_embeddings=False, eos_token_id=EOS_ID)


def write_model_folder(dst: Path, cfg: Qwen2Config, seed: int) -> None:
    """A randomly initialised model as a Hugging Face folder: safetensors, config, tokenizer."""
    from ports.hf_export import export_hf  # ports depends on the model, not the other way round

    tokenizer_dir = dst.parent / (dst.name + ".tokenizer")
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    write_tokenizer(tokenizer_dir)
    model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(seed))
    export_hf(model, cfg, dst, tokenizer=tokenizer_dir)
    for f in tokenizer_dir.iterdir():
        f.unlink()
    tokenizer_dir.rmdir()


def _answer(text: str) -> str:
    return text.strip()


def exact_answer(completions: list[str], answer: list[str], **_) -> list[float]:
    """1 when the completion is exactly the sum."""
    return [1.0 if _answer(c) == a else 0.0 for c, a in zip(completions, answer)]


def number_then_stop(completions: list[str], finish_reason: list[str], **_) -> list[float]:
    """1 when the completion is a number and the model ended it itself: the task's format reward."""
    return [1.0 if _answer(c).isdigit() and f == "stop" else 0.0 for c, f in zip(completions, finish_reason)]


