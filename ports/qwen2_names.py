"""The one place that knows Hugging Face tensor names, for every supported family.

Qwen2, Qwen3 and Llama share one module tree (model.embed_tokens, model.layers.N.self_attn /
mlp / *_layernorm, model.norm, lm_head); a family only adds or drops leaves in it (qwen2's q/k/v
biases, qwen3's self_attn.q_norm / k_norm), so one mapping serves all three and the config's
abstract parameters say which names a checkpoint must hold. The module keeps the name of the
first family it served.

Flax parameter paths mirror the HF module tree; the differences are leaf names and layout:
linear kernels are stored [in, out] here and [out, in] by torch, and the LM head [embed, vocab].
"""

from __future__ import annotations

import re

_LAYER_LEAF = re.compile(
    r"model\.layers\.(\d+)\.(self_attn\.(?:[qkvo]_proj|[qk]_norm)|mlp\.(?:gate|up|down)_proj|input_layernorm|"
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
    """HF tensor name -> (Flax state path, transposed). KeyError for a name no supported family has."""
    if name == "model.embed_tokens.weight":
        return ("embed_tokens",), False
    if name == "lm_head.weight":
        return ("lm_head",), True
    if name == "model.norm.weight":
        return ("norm", "scale"), False
    m = _LAYER_LEAF.match(name)
    if not m:
        raise KeyError(f"unknown tensor {name!r} for a Qwen2/Qwen3/Llama model")
    layer, module, leaf = int(m.group(1)), m.group(2).split("."), m.group(3)
    if leaf == "bias":
        return ("layers", layer, *module, "bias"), False
    if module[-1].endswith("norm"):
        return ("layers", layer, *module, "scale"), False
    return ("layers", layer, *module, "kernel"), True
