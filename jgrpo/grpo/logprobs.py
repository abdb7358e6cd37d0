"""Per-token log-probs (and entropies) of completion tokens, in fp32, without ever holding
batch x length x vocab logits: the lm head runs over chunks of completion positions, and the
backward pass recomputes each chunk's logits instead of storing them."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _chunk_logprobs(kernel, hidden, targets, temperature: float, with_entropy: bool):
    """hidden [b, c, e], targets [b, c] -> log-prob of each target and entropy, both [b, c] fp32."""
    logits = jnp.dot(hidden, kernel, preferred_element_type=jnp.float32) / temperature
    lse = jax.nn.logsumexp(logits, axis=-1)
    # A masked sum instead of a gather: with the vocab axis sharded over `tp` it reduces locally and
    # all-reduces a scalar per token, where a gather would collect the whole chunk of logits.
    hit = jnp.arange(logits.shape[-1], dtype=targets.dtype) == targets[..., None]
    logp = jnp.sum(jnp.where(hit, logits, 0.0), axis=-1) - lse
    if not with_entropy:
        return logp, jnp.zeros_like(logp)
    probs = jnp.exp(logits - lse[..., None])
    return logp, lse - jnp.sum(probs * logits, axis=-1)


def token_logprobs(hidden, kernel, targets, *, temperature: float = 1.0, chunk_size: int = 256,
                   with_entropy: bool = False):
    """log softmax(hidden @ kernel / temperature)[targets], chunked along the length.

    hidden [b, c, e] predicts targets [b, c]; kernel [e, vocab]. Returns (logps, entropies) [b, c]
    fp32; entropies are zeros unless with_entropy.
    """
    b, c, e = hidden.shape
    chunk = min(chunk_size, c)
    n = -(-c // chunk)
    pad = n * chunk - c
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    targets = jnp.pad(targets, ((0, 0), (0, pad)))
    hidden = hidden.reshape(b, n, chunk, e).swapaxes(0, 1)
    targets = targets.reshape(b, n, chunk).swapaxes(0, 1)

    one_chunk = jax.checkpoint(_chunk_logprobs, static_argnums=(3, 4))

    def body(_, xs):
        return None, one_chunk(kernel, xs[0], xs[1], temperature, with_entropy)

    _, (logps, entropies) = jax.lax.scan(body, None, (hidden, targets))
    unchunk = lambda x: x.swapaxes(0, 1).reshape(b, n * chunk)[:, :c]
    return unchunk(logps), unchunk(entropies)


def completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, *,
                        temperature: float = 1.0, chunk_size: int = 256, with_entropy: bool = False):
    """Log-probs [B, C] of each completion token given its prompt and the completion before it.

    One forward over prompt + completion; the hidden state at position P - 1 + j predicts
    completion token j. Positions outside completion_mask hold meaningless values.
    """
    ids = jnp.concatenate([prompt_ids, completion_ids], axis=1)
    mask = jnp.concatenate([prompt_mask, completion_mask], axis=1)
    hidden, _ = model.hidden_states(ids, mask)
    p = prompt_ids.shape[1]
    return token_logprobs(hidden[:, p - 1:-1], model.lm_head_kernel(), completion_ids,
                          temperature=temperature, chunk_size=chunk_size, with_entropy=with_entropy)
