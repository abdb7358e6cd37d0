"""The decoder in Flax NNX: Qwen2 (Qwen2.5, Qwen2.5-Math, R1-Distill-Qwen), Qwen3 and Llama 3.x.

Read top to bottom against the architecture: token embedding -> N x [RMSNorm -> grouped-query
attention with rotary positions -> residual -> RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm ->
LM head. The families differ only in options of the config (`jgrpo.model.config`): biases on
q/k/v (qwen2), a per-head RMSNorm on queries and keys (qwen3), head_dim set apart from
hidden/heads, Llama 3's RoPE frequency scaling, and a tied LM head. Parameter names follow the
Hugging Face module tree so the bridges in `ports/` stay a thin renaming.

Every parameter carries `logical_axes` metadata; `jgrpo.model.sharding` maps those names to mesh
axes in one table. The attention kernels themselves live in `jgrpo.model.attention`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from jgrpo.model.attention import einsum_attention, fused_attention, resolve_attention
from jgrpo.model.config import DtypePolicy, Qwen2Config
from jgrpo.model.kv_cache import KVCache

_INIT_STD = 0.02  # transformers' initializer_range for all three families


def _param(rngs: nnx.Rngs | None, shape, dtype, logical_axes, init: str) -> nnx.Param:
    if init == "normal":
        value = _INIT_STD * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "zeros":
        value = jnp.zeros(shape, jnp.float32)
    else:
        value = jnp.ones(shape, jnp.float32)
    return nnx.Param(value.astype(dtype), logical_axes=logical_axes)


class Linear(nnx.Module):
    """y = x W (+ b), with W stored [in, out]."""

    def __init__(self, d_in, d_out, axes, *, bias: bool, policy: DtypePolicy, rngs: nnx.Rngs):
        self.policy = policy
        self.kernel = _param(rngs, (d_in, d_out), policy.param_dtype, axes, "normal")
        self.bias = _param(rngs, (d_out,), policy.param_dtype, axes[1:], "zeros") if bias else None

    def __call__(self, x):
        cd = self.policy.compute_dtype
        y = jnp.dot(x.astype(cd), self.kernel[...].astype(cd))
        if self.bias is not None:
            y = y + self.bias[...].astype(cd)
        return y


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, *, policy: DtypePolicy):
        self.eps = eps
        self.policy = policy
        self.scale = _param(None, (dim,), policy.param_dtype, ("norm",), "ones")

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        cd = self.policy.compute_dtype
        return normed.astype(cd) * self.scale[...].astype(cd)


def rope_frequencies(cfg: Qwen2Config):
    """The inverse frequencies [head_dim / 2] of the rotary embedding, in fp32 as transformers
    computes them: theta^(-2i/d), then Llama 3's scaling when the config has one."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    s = cfg.rope_scaling
    if s is None:
        return inv_freq
    # "llama3": long wavelengths slowed down by `factor`, short ones kept, the band between blended.
    context = s.original_max_position_embeddings
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > context / s.low_freq_factor, inv_freq / s.factor, inv_freq)
    smooth = (context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= context / s.high_freq_factor) & (wavelen <= context / s.low_freq_factor)
    return jnp.where(medium, blended, scaled)


def rotary_embedding(x, positions, inv_freq):
    """Rotate-half RoPE (as in the Hugging Face models): x [b, t, heads, d], positions [b, t],
    inv_freq [d / 2]."""
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, t, d/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x * cos + rotated * sin


class Attention(nnx.Module):
    """Grouped-query attention. q/k/v carry biases when cfg.qkv_bias (qwen2), the output projection
    never does; with cfg.qk_norm (qwen3) each query and key head is RMS-normed before RoPE."""

    def __init__(self, cfg: Qwen2Config, *, policy: DtypePolicy, rngs: nnx.Rngs):
        self.cfg = cfg
        self.policy = policy
        e, h, kv, d = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = Linear(e, h * d, ("embed", "heads"), bias=cfg.qkv_bias, policy=policy, rngs=rngs)
        self.k_proj = Linear(e, kv * d, ("embed", "kv_heads"), bias=cfg.qkv_bias, policy=policy, rngs=rngs)
        self.v_proj = Linear(e, kv * d, ("embed", "kv_heads"), bias=cfg.qkv_bias, policy=policy, rngs=rngs)
        self.o_proj = Linear(h * d, e, ("heads", "embed"), bias=False, policy=policy, rngs=rngs)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps, policy=policy) if cfg.qk_norm else None
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps, policy=policy) if cfg.qk_norm else None

    def __call__(self, x, positions, allowed, lengths, kv: tuple[jax.Array, jax.Array] | None, slot):
        """x [b, t, e]. Exactly one of allowed / lengths is given:
        allowed [b, t, s] says which keys each query may see (the einsum kernel);
        lengths [b]: causal over right-padded rows of that many real tokens (the fused kernel).
        kv: this layer's cache (keys, values) [b, s, kv_heads, d] or None; slot: where to write."""
        cfg = self.cfg
        heads = "b t (h d) -> b t h d"
        q = rearrange(self.q_proj(x), heads, d=cfg.head_dim)
        k = rearrange(self.k_proj(x), heads, d=cfg.head_dim)
        v = rearrange(self.v_proj(x), heads, d=cfg.head_dim)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        inv_freq = rope_frequencies(cfg)
        q = rotary_embedding(q, positions, inv_freq)
        k = rotary_embedding(k, positions, inv_freq)
        if kv is not None:
            k = jax.lax.dynamic_update_slice(kv[0], k.astype(kv[0].dtype), (0, slot, 0, 0))
            v = jax.lax.dynamic_update_slice(kv[1], v.astype(kv[1].dtype), (0, slot, 0, 0))
            new_kv = (k, v)
        else:
            new_kv = None
        cd = self.policy.compute_dtype
        if lengths is not None:
            out = fused_attention(q, k, v, lengths, cd)
        else:
            out = einsum_attention(q, k, v, allowed, cd)
        return self.o_proj(out), new_kv


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: Qwen2Config, *, policy: DtypePolicy, rngs: nnx.Rngs):
        e, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Linear(e, i, ("embed", "mlp"), bias=False, policy=policy, rngs=rngs)
        self.up_proj = Linear(e, i, ("embed", "mlp"), bias=False, policy=policy, rngs=rngs)
        self.down_proj = Linear(i, e, ("mlp", "embed"), bias=False, policy=policy, rngs=rngs)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: Qwen2Config, *, policy: DtypePolicy, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, policy=policy)
        self.self_attn = Attention(cfg, policy=policy, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, policy=policy)
        self.mlp = MLP(cfg, policy=policy, rngs=rngs)

    def __call__(self, x, positions, allowed, lengths, kv, slot):
        attn_out, new_kv = self.self_attn(self.input_layernorm(x), positions, allowed, lengths, kv, slot)
        x = x + attn_out
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, new_kv


class Qwen2ForCausalLM(nnx.Module):
    """The decoder of every supported family (the class keeps the name of the first); cfg says which
    options are on. attention: "auto" | "einsum" | "fused" (see `jgrpo.model.attention`), resolved
    here once; the fused kernel serves only the forward without a KV cache."""

    def __init__(self, cfg: Qwen2Config, *, policy: DtypePolicy = DtypePolicy(), remat: bool = False,
                 attention: str = "auto", rngs: nnx.Rngs):
        self.cfg = cfg
        self.policy = policy
        self.remat = remat
        self.attention = resolve_attention(attention)  # a plain string: static, not a pytree leaf
        self.embed_tokens = _param(rngs, (cfg.vocab_size, cfg.hidden_size), policy.param_dtype,
                                   ("vocab", "embed"), "normal")
        self.layers = nnx.List([DecoderLayer(cfg, policy=policy, rngs=rngs) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, policy=policy)
        if cfg.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = _param(rngs, (cfg.hidden_size, cfg.vocab_size), policy.param_dtype,
                                  ("embed", "vocab"), "normal")

    def hidden_states(self, input_ids, attention_mask, cache: KVCache | None = None):
        """Final-normed hidden states [b, t, e] (compute dtype) and the updated cache.

        attention_mask [b, t] marks real tokens; left padding is allowed, and positions count
        real tokens only, so a left-padded row sees the same positions as its unpadded self.

        With the fused kernel and no cache, each row's real tokens must be contiguous (left padding,
        then tokens, then right padding, either padding possibly empty): the row is rolled left so it
        is right-padded, as cuDNN wants, run causally over its length, and rolled back. A row with
        holes in its mask would silently attend across them; use attention="einsum" for such rows.
        """
        mask = attention_mask.astype(bool)
        t = input_ids.shape[1]
        new_positions = jnp.cumsum(mask, axis=-1, dtype=jnp.int32) - 1
        fused = cache is None and self.attention == "fused"
        allowed = lengths = None
        if cache is None:
            positions = jnp.maximum(new_positions, 0)
            key_mask, slot = mask, 0
            query_slots = jnp.arange(t)
        else:
            slot = cache.index
            positions = jnp.maximum(cache.mask.sum(-1, dtype=jnp.int32)[:, None] + new_positions, 0)
            key_mask = jax.lax.dynamic_update_slice(cache.mask, mask, (0, slot))
            query_slots = slot + jnp.arange(t)
        if fused:
            # Roll every row left by its first real token: real tokens first, padding after.
            first = jnp.argmax(mask, axis=-1)
            order = (jnp.arange(t)[None, :] + first[:, None]) % t
            input_ids = jnp.take_along_axis(input_ids, order, axis=1)
            positions = jnp.take_along_axis(positions, order, axis=1)
            # At least 1: a row of padding only attends its first slot to itself, not to nothing.
            lengths = jnp.maximum(mask.sum(-1, dtype=jnp.int32), 1)
        else:
            key_slots = jnp.arange(key_mask.shape[1])
            allowed = key_mask[:, None, :] & (key_slots[None, None, :] <= query_slots[None, :, None])

        x = jnp.take(self.embed_tokens[...], input_ids, axis=0).astype(self.policy.compute_dtype)
        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            kv = None if cache is None else (cache.keys[i], cache.values[i])
            args = (x, positions, allowed, lengths, kv, slot)
            # Recomputing activations pays off only where a backward pass follows: never with a cache
            # (sampling), where nnx.remat inside the sampler's while_loop would also fail to trace.
            if self.remat and cache is None:
                x, new_kv = nnx.remat(lambda lyr, *a: lyr(*a))(layer, *args)
            else:
                x, new_kv = layer(*args)
            if new_kv is not None:
                new_keys.append(new_kv[0])
                new_values.append(new_kv[1])
        x = self.norm(x)
        if fused:  # back to the caller's layout
            x = jnp.take_along_axis(x, ((jnp.arange(t)[None, :] - first[:, None]) % t)[:, :, None], axis=1)
        if cache is not None:
            cache = KVCache(keys=new_keys, values=new_values, mask=key_mask, index=slot + t)
        return x, cache

    def lm_head_kernel(self):
        """[e, vocab] in compute dtype (the transposed embedding when tied)."""
        w = self.embed_tokens[...].T if self.lm_head is None else self.lm_head[...]
        return w.astype(self.policy.compute_dtype)

    def logits(self, hidden):
        """fp32 logits from hidden states, whatever the compute dtype."""
        return jnp.dot(hidden, self.lm_head_kernel(), preferred_element_type=jnp.float32)

    def __call__(self, input_ids, attention_mask, cache: KVCache | None = None):
        hidden, cache = self.hidden_states(input_ids, attention_mask, cache)
        return self.logits(hidden), cache

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        cfg = self.cfg
        return KVCache.empty(cfg.num_hidden_layers, batch, max_len, cfg.num_key_value_heads, cfg.head_dim,
                             self.policy.compute_dtype)
