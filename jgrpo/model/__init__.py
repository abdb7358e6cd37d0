"""The decoder (Qwen2, Qwen3, Llama 3) in Flax NNX: config, model, KV cache and sharding rules.
Knows nothing of training."""

from jgrpo.model.config import (DTYPE_NAMES, FAMILIES, ConfigError, DtypePolicy, Qwen2Config, RopeScaling, dtype_name,
                                parse_dtype)
from jgrpo.model.kv_cache import KVCache
from jgrpo.model.qwen2 import Qwen2ForCausalLM
from jgrpo.model.sharding import (LOGICAL_AXIS_RULES, ShardingError, batch_sharding, build_sharded,
                                  data_parallel_size, logical_to_spec, make_mesh, state_shardings)

__all__ = [
    "ConfigError", "DTYPE_NAMES", "DtypePolicy", "FAMILIES", "KVCache", "LOGICAL_AXIS_RULES", "Qwen2Config",
    "Qwen2ForCausalLM", "RopeScaling", "ShardingError", "batch_sharding", "build_sharded", "data_parallel_size",
    "logical_to_spec", "dtype_name", "make_mesh", "parse_dtype", "state_shardings",
]
