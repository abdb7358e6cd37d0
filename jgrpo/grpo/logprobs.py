"""Per-token log-probs (and entropies) of completion tokens, in fp32, without ever holding
batch x length x vocab logits.

The LM head runs over chunks of completion positions in a scan. Its gradient is written by hand
(a custom VJP) because the vocabulary is the expensive axis: autodiff of logsumexp + entropy under
jax.checkpoint walks the vocab about four times per token with exp and recomputes the forward;
here the forward walks it once for max and once for exp (logsumexp, target logit and entropy in
one pass) and the backward recomputes each chunk's logits once and walks them once. Between the
passes it keeps the inputs (hidden states, kernel, targets) and two fp32 numbers per token
(logsumexp, entropy), never a chunk's logits.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp


def _chunk_logits(kernel, hidden, temperature: float):
    return jnp.dot(hidden, kernel, preferred_element_type=jnp.float32) / temperature


def _target_mask(targets, vocab: int):
    # A mask instead of a gather: with the vocab axis sharded over `tp` a masked sum reduces locally
    # and all-reduces a scalar per token, where a gather would collect the whole chunk of logits.
    return jnp.arange(vocab, dtype=targets.dtype) == targets[..., None]


def _chunk_forward(kernel, hidden, targets, temperature: float, with_entropy: bool):
    """hidden [b, c, e], targets [b, c] -> (log-prob of each target, logsumexp, entropy), [b, c] fp32;
    the entropy is zeros unless with_entropy."""
    logits = _chunk_logits(kernel, hidden, temperature)
    top = jnp.max(logits, axis=-1, keepdims=True)
    unnormalised = jnp.exp(logits - top)
    total = jnp.sum(unnormalised, axis=-1)
    lse = top[..., 0] + jnp.log(total)
    target_logit = jnp.sum(jnp.where(_target_mask(targets, logits.shape[-1]), logits, 0.0), axis=-1)
    logp = target_logit - lse
    if not with_entropy:
        return logp, lse, jnp.zeros_like(logp)
    # H = lse - E_p[logit], written relative to the max so the subtraction does not cancel
    return logp, lse, jnp.log(total) - jnp.sum(unnormalised * (logits - top), axis=-1) / total


def _chunks(x, chunk: int):
    """[b, c, ...] -> [n, b, chunk, ...] (zero-padded along c to n x chunk)."""
    n = -(-x.shape[1] // chunk)
    pad = [(0, 0), (0, n * chunk - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
    x = jnp.pad(x, pad)
    return x.reshape(x.shape[0], n, chunk, *x.shape[2:]).swapaxes(0, 1)


def _unchunk(x, c: int):
    """[n, b, chunk, ...] -> [b, c, ...]."""
    x = x.swapaxes(0, 1)
    return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :c]


@partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _token_logprobs(hidden, kernel, targets, temperature: float, chunk: int, with_entropy: bool):
    return _token_logprobs_fwd(hidden, kernel, targets, temperature, chunk, with_entropy)[0]


def _token_logprobs_fwd(hidden, kernel, targets, temperature: float, chunk: int, with_entropy: bool):
    def body(_, xs):
        return None, _chunk_forward(kernel, xs[0], xs[1], temperature, with_entropy)

    _, outs = jax.lax.scan(body, None, (_chunks(hidden, chunk), _chunks(targets, chunk)))
    logps, lse, entropies = (_unchunk(x, hidden.shape[1]) for x in outs)
    return (logps, entropies), (hidden, kernel, targets, lse, entropies)


def _token_logprobs_bwd(temperature: float, chunk: int, with_entropy: bool, residuals, cotangents):
    hidden, kernel, targets, lse, entropies = residuals
    d_logps, d_entropies = cotangents

    def body(d_kernel, xs):
        h, t, lse, entropy, d_logp, d_entropy = xs
        logits = _chunk_logits(kernel, h, temperature)
        logp_all = logits - lse[..., None]
        probs = jnp.exp(logp_all)
        # d logp_target / d z = onehot - p;  d H / d z = -p (log p + H)
        d_logits = jnp.where(_target_mask(t, logits.shape[-1]), d_logp[..., None], 0.0) - probs * d_logp[..., None]
        if with_entropy:  # without it the entropies are constant zeros
            d_logits = d_logits - probs * d_entropy[..., None] * (logp_all + entropy[..., None])
        d_logits = (d_logits / temperature).astype(kernel.dtype)
        d_h = jnp.dot(d_logits, kernel.T, preferred_element_type=jnp.float32).astype(h.dtype)
        d_kernel = d_kernel + jnp.einsum("bce,bcv->ev", h, d_logits, preferred_element_type=jnp.float32)
        return d_kernel, d_h

    xs = tuple(_chunks(x, chunk) for x in (hidden, targets, lse, entropies, d_logps, d_entropies))
    d_kernel, d_hidden = jax.lax.scan(body, jnp.zeros(kernel.shape, jnp.float32), xs)
    return _unchunk(d_hidden, hidden.shape[1]), d_kernel.astype(kernel.dtype), None


_token_logprobs.defvjp(_token_logprobs_fwd, _token_logprobs_bwd)


def token_logprobs(hidden, kernel, targets, *, temperature: float = 1.0, chunk_size: int = 256,
                   with_entropy: bool = False):
    """log softmax(hidden @ kernel / temperature)[targets], chunked along the length.

    hidden [b, c, e] predicts targets [b, c]; kernel [e, vocab]. Returns (logps, entropies) [b, c]
    fp32, differentiable in hidden and kernel; entropies are zeros unless with_entropy.
    """
    return _token_logprobs(hidden, kernel, targets, float(temperature), min(chunk_size, hidden.shape[1]),
                           with_entropy)


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
