"""Decoder settings, read from a Hugging Face `config.json`: Qwen2 (Qwen2.5, Qwen2.5-Math,
DeepSeek-R1-Distill-Qwen), Qwen3 and Llama 3.x.

The three families are one architecture (pre-norm decoder, grouped-query attention with rotary
positions, SwiGLU MLP, RMSNorm) that differs in a few named options of `Qwen2Config`:

    option              qwen2        qwen3                    llama (3.x)
    qkv_bias            yes          no                       no
    qk_norm             no           per-head RMSNorm on q, k no
    head_dim            hidden/heads set on its own           set on its own (usually hidden/heads)
    rope_scaling        none         none                     "llama3" (3.1+), none (3.0)
    tie_word_embeddings either       small models             1B/3B

`FAMILIES` fixes what each model_type implies; anything a config.json asks for beyond these
options is refused with one line naming it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax.numpy as jnp


class ConfigError(ValueError):
    """A model config that is missing a field or asks for something this model does not implement."""


@dataclasses.dataclass(frozen=True)
class Family:
    """What a Hugging Face model_type implies for the decoder's options."""

    architecture: str  # config.json's "architectures" entry, transformers' class name
    qkv_bias: bool
    qk_norm: bool


FAMILIES = {
    "qwen2": Family("Qwen2ForCausalLM", qkv_bias=True, qk_norm=False),
    "qwen3": Family("Qwen3ForCausalLM", qkv_bias=False, qk_norm=True),
    "llama": Family("LlamaForCausalLM", qkv_bias=False, qk_norm=False),
}
SUPPORTED = ", ".join(f"{t} ({f.architecture})" for t, f in FAMILIES.items())

_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)
ROPE_TYPES = ("default", "llama3")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's RoPE frequency scaling (rope_type "llama3"): wavelengths longer than
    original_max_position_embeddings / low_freq_factor are stretched by `factor`, those shorter than
    original_max_position_embeddings / high_freq_factor are kept, and the band between is blended."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int
    rope_type: str = "llama3"

    def __post_init__(self):
        if self.rope_type != "llama3":
            raise ConfigError(f"rope type {self.rope_type!r} is not supported (only {', '.join(ROPE_TYPES)})")
        if self.high_freq_factor <= self.low_freq_factor:
            raise ConfigError(f"rope_scaling: high_freq_factor {self.high_freq_factor} must exceed "
                              f"low_freq_factor {self.low_freq_factor}")

    def to_hf_dict(self) -> dict[str, Any]:
        return {"rope_type": self.rope_type, "factor": self.factor, "low_freq_factor": self.low_freq_factor,
                "high_freq_factor": self.high_freq_factor,
                "original_max_position_embeddings": self.original_max_position_embeddings}


@dataclasses.dataclass(frozen=True)
class Qwen2Config:
    """One decoder's shape and options. The class keeps the name of the first family it served;
    model_type says which Hugging Face family the weights belong to (`FAMILIES`), and qkv_bias /
    qk_norm default to what that family implies (None: the family's value)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    model_type: str = "qwen2"
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    qkv_bias: bool | None = None  # biases on the q, k and v projections (never on o)
    qk_norm: bool | None = None  # RMSNorm over head_dim on every query and key head, before RoPE
    rope_scaling: RopeScaling | None = None  # None: plain RoPE

    def __post_init__(self):
        family = FAMILIES.get(self.model_type)
        if family is None:
            raise ConfigError(f"model_type {self.model_type!r} is not supported; supported: {SUPPORTED}")
        for option in ("qkv_bias", "qk_norm"):
            implied = getattr(family, option)
            if getattr(self, option) is None:
                object.__setattr__(self, option, implied)
            elif getattr(self, option) != implied:
                raise ConfigError(f"{option}={getattr(self, option)} does not fit model_type {self.model_type!r} "
                                  f"(its {option} is {implied})")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                                  f"{self.num_attention_heads} (and no head_dim is given)")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.head_dim % 2:
            raise ConfigError(f"head_dim {self.head_dim} is odd; rotary positions need an even one")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )

    @property
    def family(self) -> Family:
        return FAMILIES[self.model_type]

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "Qwen2Config":
        model_type = _model_type(d)
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ConfigError(f"config.json: missing required field {missing[0]!r}")
        if d.get("use_sliding_window", False):
            raise ConfigError("config.json: use_sliding_window=true is not supported (sliding-window attention)")
        other_layers = sorted(set(d.get("layer_types") or ["full_attention"]) - {"full_attention"})
        if other_layers:
            raise ConfigError(f"config.json: layer_types {other_layers[0]!r} is not supported (only full_attention)")
        if d.get("hidden_act", "silu") != "silu":
            raise ConfigError(f"config.json: hidden_act {d['hidden_act']!r} is not supported (only 'silu')")
        # qwen3 and llama name their bias switches (attention_bias would add one to o_proj too);
        # qwen2's biases are fixed and transformers ignores these keys there.
        for key in ("attention_bias", "mlp_bias"):
            if model_type != "qwen2" and d.get(key, False):
                raise ConfigError(f"config.json: {key}=true is not supported for model_type {model_type!r}")
        rope_theta, rope_scaling = _rope(d)
        eos = d.get("eos_token_id")
        try:
            return cls(
                vocab_size=int(d["vocab_size"]),
                hidden_size=int(d["hidden_size"]),
                intermediate_size=int(d["intermediate_size"]),
                num_hidden_layers=int(d["num_hidden_layers"]),
                num_attention_heads=int(d["num_attention_heads"]),
                num_key_value_heads=int(d["num_key_value_heads"]),
                rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
                rope_theta=rope_theta,
                max_position_embeddings=int(d.get("max_position_embeddings", 32768)),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                bos_token_id=d.get("bos_token_id"),
                eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
                model_type=model_type,
                head_dim=None if d.get("head_dim") is None else int(d["head_dim"]),
                rope_scaling=rope_scaling,
            )
        except ConfigError as e:
            raise ConfigError(f"config.json: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "Qwen2Config":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"model config not found: {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        try:
            return cls.from_hf_dict(d)
        except ConfigError as e:  # name the file itself, not just "config.json"
            raise ConfigError(f"{path}: {str(e).removeprefix('config.json: ')}") from None

    def to_hf_dict(self, torch_dtype: str = "float32") -> dict[str, Any]:
        """The config.json transformers and vLLM read for these weights: the family's own keys, RoPE
        in the Hub's form (rope_theta, rope_scaling), which transformers 4 and 5 both read."""
        d = {
            "architectures": [self.family.architecture],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
        }
        if self.model_type in ("qwen2", "qwen3"):
            d["use_sliding_window"] = False
        if self.model_type == "qwen2":  # transformers' Qwen2 has no head_dim key, but honours one
            if self.head_dim != self.hidden_size // self.num_attention_heads:
                d["head_dim"] = self.head_dim
        else:
            d["head_dim"] = self.head_dim
            d["attention_bias"] = False
        if self.model_type == "llama":
            d["mlp_bias"] = False
        if self.rope_scaling is not None:
            d["rope_scaling"] = self.rope_scaling.to_hf_dict()
        d.update({
            "attention_dropout": 0.0,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "torch_dtype": torch_dtype,
        })
        return d


def _model_type(d: dict[str, Any]) -> str:
    """The config's family: model_type, checked against architectures; a config without model_type
    is read by its architectures, one with neither as qwen2 (this project's first family)."""
    architectures = d.get("architectures") or []
    model_type = d.get("model_type")
    if model_type is None:
        by_architecture = {f.architecture: t for t, f in FAMILIES.items()}
        model_type = next((by_architecture[a] for a in architectures if a in by_architecture),
                          architectures[0] if architectures else "qwen2")
    if model_type not in FAMILIES:
        raise ConfigError(f"config.json: model_type {model_type!r} is not supported; supported: {SUPPORTED}")
    expected = FAMILIES[model_type].architecture
    if architectures and expected not in architectures:
        raise ConfigError(f"config.json: architectures {architectures} is not supported for model_type "
                          f"{model_type!r} (only {expected})")
    return model_type


def _rope(d: dict[str, Any]) -> tuple[float, RopeScaling | None]:
    """(rope_theta, scaling) from the Hub's keys (rope_theta, rope_scaling) or transformers 5's
    (rope_parameters holding both)."""
    parameters = d.get("rope_parameters") or {}
    scaling = d.get("rope_scaling") or parameters
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ConfigError(f"config.json: rope type {rope_type!r} is not supported (only {', '.join(ROPE_TYPES)})")
    if scaling.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ConfigError("config.json: partial_rotary_factor is not supported (RoPE over the whole head)")
    theta = float(d.get("rope_theta", parameters.get("rope_theta", 10000.0)))
    if rope_type == "default":
        return theta, None
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    absent = [k for k in keys if k not in scaling]
    if absent:
        raise ConfigError(f"config.json: rope type 'llama3' needs {absent[0]!r}")
    try:
        return theta, RopeScaling(float(scaling["factor"]), float(scaling["low_freq_factor"]),
                                  float(scaling["high_freq_factor"]), int(scaling["original_max_position_embeddings"]))
    except ConfigError as e:
        raise ConfigError(f"config.json: {e}") from None


DTYPE_NAMES = ("float32", "bfloat16", "float16")  # how every jgrpo command spells them
_SHORT_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # also accepted as input


def dtype_name(name: str) -> str:
    """The one spelling (float32, bfloat16, float16) of a dtype name given in either spelling."""
    name = _SHORT_NAMES.get(name, name)
    if name not in DTYPE_NAMES:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_NAMES)} (or fp32, bf16, fp16)")
    return name


def parse_dtype(name: str):
    """The JAX dtype of a name in either spelling."""
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[dtype_name(name)]


@dataclasses.dataclass(frozen=True)
class DtypePolicy:
    """Parameters are stored in `param_dtype`, matmuls run in `compute_dtype`;
    softmax, norms' statistics and final logits are always fp32."""

    param_dtype: Any = jnp.float32
    compute_dtype: Any = jnp.float32

    @classmethod
    def from_names(cls, param_dtype: str, compute_dtype: str) -> "DtypePolicy":
        return cls(parse_dtype(param_dtype), parse_dtype(compute_dtype))
