"""Tiny random Qwen2 checkpoints written with transformers, the independent reference."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

# Varied on purpose: tied/untied, 1 or 2 KV heads, rope_theta, odd vocab sizes.
TINY_CONFIGS = {
    "untied_2kv": dict(vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=False),
    "tied_1kv": dict(vocab_size=131, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=1, rope_theta=1000000.0, tie_word_embeddings=True),
    "untied_1kv_theta500": dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=1, rope_theta=500.0,
                                tie_word_embeddings=False, rms_norm_eps=1e-5),
}


def hf_config(**overrides) -> transformers.Qwen2Config:
    kw = dict(TINY_CONFIGS["untied_2kv"], max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
              pad_token_id=0)
    kw.update(overrides)
    return transformers.Qwen2Config(**kw)


def make_hf_model(folder: Path, seed: int = 0, dtype=torch.float32, **overrides) -> transformers.Qwen2ForCausalLM:
    """Random Qwen2 saved as a real safetensors checkpoint; biases and norms randomised too, so a
    mistake in either shows up in the logits."""
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(hf_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    model = model.to(dtype)
    model.save_pretrained(folder, safe_serialization=True)
    return model


def left_padded_batch(lengths: list[int], vocab: int, seed: int = 0):
    """Random token ids, left-padded to the longest length, and the matching attention mask."""
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    ids = torch.zeros(len(lengths), t, dtype=torch.long)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, t - n:] = torch.randint(3, vocab, (n,), generator=g)
        mask[i, t - n:] = 1
    return ids, mask
