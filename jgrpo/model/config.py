"""Qwen2 architecture settings, read from a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax.numpy as jnp


class ConfigError(ValueError):
    """A model config that is missing a field or asks for something this model does not implement."""


_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)


@dataclasses.dataclass(frozen=True)
class Qwen2Config:
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

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "Qwen2Config":
        model_type = d.get("model_type", "qwen2")
        if model_type != "qwen2":
            raise ConfigError(f"config.json: model_type {model_type!r} is not supported (only 'qwen2')")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ConfigError(f"config.json: missing required field {missing[0]!r}")
        if d.get("use_sliding_window", False):
            raise ConfigError("config.json: use_sliding_window=true is not supported (sliding-window attention)")
        if d.get("hidden_act", "silu") != "silu":
            raise ConfigError(f"config.json: hidden_act {d['hidden_act']!r} is not supported (only 'silu')")
        rope_scaling = d.get("rope_scaling")
        rope_parameters = d.get("rope_parameters") or {}
        # transformers 5 moved rope_theta into rope_parameters; Hub configs still carry the old key.
        rope_type = (rope_scaling or {}).get("rope_type") or rope_parameters.get("rope_type", "default")
        if rope_type not in ("default", None):
            raise ConfigError(f"config.json: rope type {rope_type!r} is not supported (only 'default')")
        rope_theta = d.get("rope_theta", rope_parameters.get("rope_theta", 10000.0))
        head_dim = d.get("head_dim")
        if head_dim is not None and head_dim != d["hidden_size"] // d["num_attention_heads"]:
            raise ConfigError("config.json: head_dim differs from hidden_size / num_attention_heads (unsupported)")
        eos = d.get("eos_token_id")
        return cls(
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=int(d["num_attention_heads"]),
            num_key_value_heads=int(d["num_key_value_heads"]),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_theta),
            max_position_embeddings=int(d.get("max_position_embeddings", 32768)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            bos_token_id=d.get("bos_token_id"),
            eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        )

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
        return cls.from_hf_dict(d)

    def to_hf_dict(self, torch_dtype: str = "float32") -> dict[str, Any]:
        """The config.json transformers and vLLM read for these weights."""
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
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
            "use_sliding_window": False,
            "attention_dropout": 0.0,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "torch_dtype": torch_dtype,
        }


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
