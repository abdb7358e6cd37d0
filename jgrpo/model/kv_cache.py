"""A static-shape key/value cache for incremental decoding.

Every row of a batch writes its next token into the same slot (`index`): prompts are left-padded,
so "slot" is shared while each row's token *position* comes from how many real tokens it holds.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    keys: list[jax.Array]  # per layer [batch, max_len, kv_heads, head_dim]
    values: list[jax.Array]
    mask: jax.Array  # [batch, max_len] bool: slot holds a real (non-padding) token
    index: jax.Array  # int32 scalar: the next slot to write

    @classmethod
    def empty(cls, num_layers: int, batch: int, max_len: int, kv_heads: int, head_dim: int, dtype) -> "KVCache":
        shape = (batch, max_len, kv_heads, head_dim)
        return cls(
            keys=[jnp.zeros(shape, dtype) for _ in range(num_layers)],
            values=[jnp.zeros(shape, dtype) for _ in range(num_layers)],
            mask=jnp.zeros((batch, max_len), bool),
            index=jnp.zeros((), jnp.int32),
        )
