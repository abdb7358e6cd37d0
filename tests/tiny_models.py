"""Tiny random checkpoints of every supported family (Qwen2, Qwen3, Llama 3) written with
transformers, the independent reference."""

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

# model_type -> transformers' config and model classes
HF_CLASSES = {
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
}

# Llama 3.1's RoPE scaling, shrunk so that these tiny heads (head_dim 32, theta 500,000: wavelengths
# 6 to 5e5) have frequencies in all three bands: kept (< 16), blended (16..64), divided by 8 (> 64).
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}

# One tied and one untied model per family, every head_dim 32 (the least vLLM's CPU attention takes).
_QWEN2 = dict(model_type="qwen2", vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=2, num_key_value_heads=1, rope_theta=10000.0)
# Qwen3: head_dim set apart from hidden / heads (4 x 32 = 128 wide attention in a 64 wide model).
_QWEN3 = dict(model_type="qwen3", vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=32, rope_theta=1000000.0)
_LLAMA3 = dict(model_type="llama", vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
               num_attention_heads=2, num_key_value_heads=1, rope_theta=500000.0, rope_scaling=LLAMA3_ROPE,
               rms_norm_eps=1e-5)
FAMILY_CONFIGS = {
    "qwen2_untied": dict(_QWEN2, tie_word_embeddings=False),
    "qwen2_tied": dict(_QWEN2, tie_word_embeddings=True),
    "qwen3_untied": dict(_QWEN3, tie_word_embeddings=False),
    "qwen3_tied": dict(_QWEN3, tie_word_embeddings=True, num_key_value_heads=1),
    "llama3_untied": dict(_LLAMA3, tie_word_embeddings=False),
    "llama3_tied": dict(_LLAMA3, tie_word_embeddings=True, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=32, hidden_size=96),
}


def hf_config(model_type: str = "qwen2", **overrides) -> transformers.PretrainedConfig:
    kw = dict(TINY_CONFIGS["untied_2kv"], max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
              pad_token_id=0)
    kw.update(overrides)
    return HF_CLASSES[model_type][0](**kw)


def make_hf_model(folder: Path, seed: int = 0, dtype=torch.float32, model_type: str = "qwen2", proj_scale: float = 1.0,
                  **overrides) -> transformers.PreTrainedModel:
    """Random model of the family saved as a real safetensors checkpoint; biases and norms (qwen3's
    q/k norms too) randomised, so a mistake in either shows up in the logits. proj_scale multiplies
    the layers' projections: a tiny random tied model otherwise just repeats its input token (the
    head is the embedding), and stronger layers make the context matter."""
    torch.manual_seed(seed)
    model = HF_CLASSES[model_type][1](hf_config(model_type, **overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
            elif ".layers." in name and name.endswith("proj.weight"):
                p.mul_(proj_scale)
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
