"""The one place that knows Hugging Face Qwen2 tensor names.

Flax parameter paths mirror the HF module tree; the differences are leaf names and layout:
linear kernels are stored [in, out] here and [out, in] by torch, and the LM head [embed, vocab].
"""

from __future__ import annotations

import re

_LAYER_LEAF = re.compile(
    r"model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj|input_layernorm|"
    r"post_attention_layernorm)\.(weight|bias)$"
)


def hf_name(path: tuple) -> tuple[str, bool]:
    """Flax state path -> (HF tensor name, whether the tensor is transposed between the two)."""
    keys = [str(k) for k in path]
    if keys == ["embed_tokens"]:
        return "model.embed_tokens.weight", False
    if keys == ["lm_head"]:
        return "lm_head.weight", True
    if keys == ["norm", "scale"]:
        return "model.norm.weight", False
    if keys[0] == "layers":
        *module, leaf = keys
        hf_leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[leaf]
        return "model." + ".".join(module) + "." + hf_leaf, leaf == "kernel"
    raise KeyError(f"no Hugging Face name for parameter {'.'.join(keys)}")


def flax_path(name: str) -> tuple[tuple, bool]:
    """HF tensor name -> (Flax state path, transposed). KeyError for a name Qwen2 does not have."""
    if name == "model.embed_tokens.weight":
        return ("embed_tokens",), False
    if name == "lm_head.weight":
        return ("lm_head",), True
    if name == "model.norm.weight":
        return ("norm", "scale"), False
    m = _LAYER_LEAF.match(name)
    if not m:
        raise KeyError(f"unknown tensor {name!r} for a Qwen2 model")
    layer, module, leaf = int(m.group(1)), m.group(2).split("."), m.group(3)
    if leaf == "bias":
        return ("layers", layer, *module, "bias"), False
    if module[-1].endswith("layernorm"):
        return ("layers", layer, *module, "scale"), False
    return ("layers", layer, *module, "kernel"), True
