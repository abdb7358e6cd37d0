"""Chunked completion log-probs against the plain log_softmax and against transformers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jgrpo.grpo import completion_logprobs
from ports.hf_load import load_hf_model
from tests import test_grpo_reference as ref
from tests.tiny_models import left_padded_batch, make_hf_model

TEMPERATURE = 0.7
COMPLETION_LENGTHS = [7, 2, 5, 1]
CHUNK = 3  # does not divide the completion width: the padded last chunk is exercised


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    hf = make_hf_model(folder, num_hidden_layers=1)
    model = load_hf_model(folder)
    vocab = hf.config.vocab_size
    prompt_ids, prompt_mask = left_padded_batch([4, 6, 1, 3], vocab, seed=3)
    g = torch.Generator().manual_seed(4)
    width = max(COMPLETION_LENGTHS)
    completion_ids = torch.randint(3, vocab, (len(COMPLETION_LENGTHS), width), generator=g)
    completion_mask = (torch.arange(width)[None] < torch.tensor(COMPLETION_LENGTHS)[:, None]).long()
    completion_ids = completion_ids * completion_mask  # padding id 0 after the end
    inputs = (prompt_ids, prompt_mask, completion_ids, completion_mask)
    return hf, model, inputs


def jax_inputs(inputs):
    return tuple(jnp.asarray(x.numpy()) for x in inputs)


def unchunked_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature):
    ids = jnp.concatenate([prompt_ids, completion_ids], 1)
    hidden, _ = model.hidden_states(ids, jnp.concatenate([prompt_mask, completion_mask], 1))
    logits = model.logits(hidden[:, prompt_ids.shape[1] - 1:-1]) / temperature
    logp = jax.nn.log_softmax(logits)
    entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return jnp.take_along_axis(logp, completion_ids[..., None], -1)[..., 0], entropy


def test_chunked_equals_unchunked_and_transformers(setup):
    hf, model, inputs = setup
    x = jax_inputs(inputs)
    mask = inputs[3].numpy().astype(bool)
    logps, entropy = nnx.jit(lambda m: completion_logprobs(m, *x, temperature=TEMPERATURE, chunk_size=CHUNK,
                                                           with_entropy=True))(model)
    assert logps.dtype == jnp.float32 and logps.shape == mask.shape
    plain, plain_entropy = nnx.jit(lambda m: unchunked_logprobs(m, *x, TEMPERATURE))(model)
    np.testing.assert_allclose(np.asarray(logps)[mask], np.asarray(plain)[mask], atol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy)[mask], np.asarray(plain_entropy)[mask], atol=1e-5)
    with torch.no_grad():
        want, want_entropy = ref.completion_logprobs(hf, *inputs, temperature=TEMPERATURE)
    np.testing.assert_allclose(np.asarray(logps)[mask], want.numpy()[mask], atol=1e-4)
    np.testing.assert_allclose(np.asarray(entropy)[mask], want_entropy.numpy()[mask], atol=1e-4)


def test_chunked_gradient_equals_unchunked(setup):
    """Through the hand-written VJP of the chunked LM head, for both outputs (log-probs and entropy)."""
    _, model, inputs = setup
    x = jax_inputs(inputs)
    graphdef, params = nnx.split(model)
    weights = x[3].astype(jnp.float32) * jnp.linspace(-1.0, 2.0, x[3].shape[1])
    entropy_weights = x[3].astype(jnp.float32) * jnp.linspace(0.5, -1.5, x[3].shape[1])

    def loss(fn):
        def of(p):
            logps, entropy = fn(nnx.merge(graphdef, p))
            return jnp.sum(logps * weights) + jnp.sum(entropy * entropy_weights)
        return of

    chunked = jax.jit(jax.grad(loss(lambda m: completion_logprobs(m, *x, temperature=TEMPERATURE,
                                                                  chunk_size=CHUNK, with_entropy=True))))
    plain = jax.jit(jax.grad(loss(lambda m: unchunked_logprobs(m, *x, TEMPERATURE))))
    for a, b in zip(jax.tree.leaves(chunked(params)), jax.tree.leaves(plain(params))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def _shapes(jaxpr):
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield getattr(v.aval, "shape", ())
        for p in eqn.params.values():
            inner = getattr(p, "jaxpr", p)
            if hasattr(inner, "eqns"):
                yield from _shapes(inner)


def test_full_logits_are_never_materialised(setup):
    _, model, inputs = setup
    x = jax_inputs(inputs)
    graphdef, params = nnx.split(model)
    vocab = model.cfg.vocab_size
    b, width = x[2].shape

    def loss(p):
        return completion_logprobs(nnx.merge(graphdef, p), *x, chunk_size=CHUNK, with_entropy=True)[0].sum()

    shapes = list(_shapes(jax.make_jaxpr(jax.grad(loss))(params).jaxpr))
    vocab_sized = [s for s in shapes if s and s[-1] == vocab and len(s) == 3]
    assert vocab_sized and max(int(np.prod(s)) for s in vocab_sized) == b * CHUNK * vocab
