"""The two attention kernels behind `Attention`, and the choice between them.

- "einsum": the reference. fp32 scores over the full [t, s] grid, any visibility pattern (`allowed`);
  the only kernel used with a KV cache (the sampler's prefill and decode).
- "fused": `jax.nn.dot_product_attention`: cuDNN flash attention on GPU when the compute dtype is
  bf16/fp16, XLA's implementation elsewhere. Causal over right-padded rows given by their lengths,
  the one masking form cuDNN accepts; grouped-query K/V heads are passed as they are, not repeated.
- "auto": "fused" on GPU backends, "einsum" elsewhere. On CPU neither wins the training step: XLA's
  fallback also materialises the scores, so forward + backward of the two measure within 10% of
  each other (scripts/bench_attention.py, BENCHMARKS.md); einsum keeps CPU numerics as they were
  and accepts any mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange

from jgrpo.choices import check_choice

ATTENTION_IMPLEMENTATIONS = ("auto", "einsum", "fused")

_GPU_BACKENDS = ("gpu", "cuda")


def resolve_attention(name: str) -> str:
    """"einsum" or "fused" for a configured name; "auto" picks fused on GPU, einsum elsewhere."""
    check_choice("attention", name, ATTENTION_IMPLEMENTATIONS)
    if name != "auto":
        return name
    return "fused" if jax.default_backend() in _GPU_BACKENDS else "einsum"


def einsum_attention(q, k, v, allowed, compute_dtype):
    """q [b, t, h, d], k/v [b, s, kv_heads, d], allowed [b, t, s] -> [b, t, h * d] in compute_dtype."""
    d = q.shape[-1]
    cd = compute_dtype
    # Queries of one KV head's group attend together: no copy of K/V per query head.
    q = rearrange(q, "b t (k g) d -> b t k g d", k=k.shape[2])
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k.astype(cd), preferred_element_type=jnp.float32)
    scores = scores / jnp.sqrt(jnp.float32(d))
    # finfo.min rather than -inf: a padding query with no visible key gets a harmless uniform row.
    scores = jnp.where(allowed[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(cd)
    return rearrange(jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(cd)), "b t k g d -> b t (k g d)")


def _implementation(compute_dtype):
    """cuDNN where it applies (GPU, half-precision inputs); None (XLA) otherwise."""
    half = jnp.dtype(compute_dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    return "cudnn" if half and jax.default_backend() in _GPU_BACKENDS else None


def fused_attention(q, k, v, lengths, compute_dtype):
    """Causal attention over right-padded rows: q [b, t, h, d], k/v [b, t, kv_heads, d], lengths [b]
    real tokens at the start of each row (>= 1) -> [b, t, h * d] in compute_dtype.

    Query positions at or past a row's length get zeros."""
    d = q.shape[-1]
    cd = compute_dtype
    lengths = lengths.astype(jnp.int32)
    out = jax.nn.dot_product_attention(q.astype(cd), k.astype(cd), v.astype(cd), scale=float(d) ** -0.5,
                                       is_causal=True, query_seq_lengths=lengths, key_value_seq_lengths=lengths,
                                       implementation=_implementation(cd))
    return rearrange(out.astype(cd), "b t h d -> b t (h d)")
