"""The token draw on its own: each filter's samples follow the exact filtered softmax, and the
returned log-probs are that distribution's."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jgrpo.sampling.draw import argmax, categorical, draw

VOCAB = 500
ROWS = 6000


def _logits(seed=0):
    return 3.0 * jax.random.normal(jax.random.key(seed), (VOCAB,))


def _expected(logits, temperature, top_k, top_p):
    """The filtered distribution computed the plain way, with a full sort (vLLM's order:
    temperature, top-k, then top-p over the top-k-renormalised probabilities)."""
    scaled = np.asarray(logits, np.float64) / temperature
    order = np.argsort(-scaled, kind="stable")
    keep = np.zeros(VOCAB, bool)
    keep[order[:top_k or VOCAB]] = True
    probs = np.where(keep, np.exp(scaled - scaled.max()), 0.0)
    probs /= probs.sum()
    if top_p < 1:
        ranked = probs[order]
        mass_above = np.cumsum(ranked) - ranked
        keep[order[mass_above >= top_p]] = False
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum()
    return probs


@functools.cache
def _jitted(top_k, use_top_p, candidates):
    return jax.jit(functools.partial(draw, greedy=False, top_k=top_k, use_top_p=use_top_p, candidates=candidates))


def _draw(logits, temperature, top_k, top_p, candidates=128, seed=1, rows=ROWS):
    u = jax.random.uniform(jax.random.key(seed), (rows,))
    rows_logits = jnp.broadcast_to(logits, (rows, VOCAB))
    tokens, logprobs = _jitted(top_k, top_p < 1, candidates)(u, rows_logits, jnp.float32(temperature),
                                                             jnp.float32(top_p))
    return np.asarray(tokens), np.asarray(logprobs)


@pytest.mark.parametrize("temperature,top_k,top_p,candidates", [
    (0.7, 0, 1.0, 128),   # plain temperature: inverse CDF over the whole vocabulary
    (1.3, 12, 1.0, 128),  # top-k
    (0.9, 0, 0.8, 128),   # top-p, nucleus within the candidates
    (0.9, 0, 0.8, 4),     # top-p, nucleus larger than the candidates: the full-sort fallback
    (1.0, 30, 0.6, 128),  # top-k then top-p
])
def test_samples_follow_the_filtered_softmax(temperature, top_k, top_p, candidates):
    logits = _logits()
    expected = _expected(logits, temperature, top_k, top_p)
    tokens, logprobs = _draw(logits, temperature, top_k, top_p, candidates)
    counts = np.bincount(tokens, minlength=VOCAB)
    assert counts[expected == 0].sum() == 0, "a filtered-out token was drawn"
    # Chi-square over the kept tokens with small expected counts pooled; a fixed seed, and a bound
    # five standard deviations above the statistic's mean.
    expect = expected * ROWS
    big = expect >= 5
    obs = np.append(counts[big], counts[~big & (expected > 0)].sum())
    exp = np.append(expect[big], expect[~big & (expected > 0)].sum())
    obs, exp = obs[exp > 0], exp[exp > 0]
    chi2 = ((obs - exp) ** 2 / exp).sum()
    df = len(obs) - 1
    assert chi2 < df + 5 * np.sqrt(2 * df), (chi2, df)
    np.testing.assert_allclose(logprobs, np.log(expected[tokens]), atol=2e-5)


def test_same_uniforms_give_the_same_tokens():
    logits = _logits(3)
    a, _ = _draw(logits, 0.8, 40, 0.9, seed=7, rows=64)
    b, _ = _draw(logits, 0.8, 40, 0.9, seed=7, rows=64)
    c, _ = _draw(logits, 0.8, 40, 0.9, seed=8, rows=64)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_greedy_and_argmax_match_jnp_argmax_including_ties():
    x = jax.random.normal(jax.random.key(0), (6, VOCAB))
    x = x.at[2, 10].set(9.0).at[2, 300].set(9.0)  # a tie: the first index wins, as in jnp.argmax
    x = x.at[3].set(-jnp.inf).at[3, 499].set(0.0)
    np.testing.assert_array_equal(np.asarray(jax.jit(argmax)(x)), np.asarray(jnp.argmax(x, -1)))
    odd = jax.random.normal(jax.random.key(1), (3, 257))  # a prime vocabulary: padded blocks
    np.testing.assert_array_equal(np.asarray(jax.jit(argmax)(odd)), np.asarray(jnp.argmax(odd, -1)))
    greedy = jax.jit(lambda x: draw(None, x, None, None, greedy=True, top_k=0, use_top_p=False, candidates=8))
    tokens, logprobs = greedy(x)
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(jnp.argmax(x, -1)))
    np.testing.assert_allclose(np.asarray(logprobs), np.asarray(jax.nn.log_softmax(x)[jnp.arange(6), tokens]),
                               atol=1e-6)


def test_categorical_never_returns_a_zero_weight_entry():
    weights = jnp.zeros((4, 257)).at[:, 5].set(1.0).at[:, 200].set(2.0)
    u = jnp.array([0.0, 0.3334, 0.9999999, 1.0 - 2.0**-24])
    drawn = np.asarray(jax.jit(categorical)(u, weights))
    assert set(drawn.tolist()) <= {5, 200}
    assert drawn[0] == 5
