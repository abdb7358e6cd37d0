"""Fused attention (jax.nn.dot_product_attention) against the einsum reference and transformers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jgrpo.model import Qwen2Config, Qwen2ForCausalLM, make_mesh
from jgrpo.model.attention import ATTENTION_IMPLEMENTATIONS, resolve_attention
from ports.hf_load import load_hf_model
from tests.tiny_models import TINY_CONFIGS, left_padded_batch, make_hf_model

CONFIGS = ["untied_2kv", "tied_1kv"]  # 4 query heads over 2 or 1 KV heads, untied and tied
LENGTHS = [7, 3, 11, 1]
# [left pad | prompt | completion | right pad] rows, as the trainer's forward sees them: (prompt,
# completion) lengths in a prompt width of 5 and a completion width of 6. Full, no completion,
# no left padding, and a row of padding only.
PROMPT_WIDTH, COMPLETION_WIDTH = 5, 6
ROWS = [(3, 4), (5, 6), (1, 0), (5, 2), (0, 0)]
ATOL = 1e-4


def mixed_batch(vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = PROMPT_WIDTH + COMPLETION_WIDTH
    ids = np.zeros((len(ROWS), t), np.int32)
    mask = np.zeros((len(ROWS), t), np.int32)
    for i, (p, c) in enumerate(ROWS):
        real = slice(PROMPT_WIDTH - p, PROMPT_WIDTH + c)
        ids[i, real] = rng.integers(3, vocab, p + c)
        mask[i, real] = 1
    return ids, mask


@pytest.fixture(scope="module", params=CONFIGS)
def models(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf = make_hf_model(folder, **TINY_CONFIGS[request.param])
    return hf, {name: load_hf_model(folder, attention=name) for name in ("einsum", "fused")}, folder


_forward = nnx.jit(lambda m, ids, mask: m(ids, mask)[0])


def _loss(m, ids, mask, weights):
    """Weighted log-probs of the next token; weights zero padding positions out (a NaN would still
    show through 0 * NaN)."""
    logps = jax.nn.log_softmax(m(ids, mask)[0], axis=-1)
    targets = jnp.roll(ids, -1, axis=1)
    return jnp.sum(jnp.take_along_axis(logps, targets[..., None], axis=-1)[..., 0] * weights)


_grad = nnx.jit(nnx.grad(_loss))


def test_left_padded_logits_match_transformers(models):
    hf, ours, _ = models
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits.numpy()
    real = mask.numpy().astype(bool)
    for name, model in ours.items():
        logits = np.asarray(_forward(model, jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy())))
        assert np.abs(logits[real] - ref[real]).max() <= ATOL, name


def test_prompt_completion_rows_match_transformers_unpadded(models):
    hf, ours, _ = models
    ids, mask = mixed_batch(hf.config.vocab_size)
    out = {name: np.asarray(_forward(m, jnp.asarray(ids), jnp.asarray(mask))) for name, m in ours.items()}
    for name, logits in out.items():
        assert np.isfinite(logits).all(), name  # the padding-only row included
    for i in range(len(ROWS)):
        real = mask[i].astype(bool)
        if not real.any():
            continue
        with torch.no_grad():
            ref = hf(input_ids=torch.as_tensor(ids[i][real][None], dtype=torch.long)).logits.numpy()[0]
        for name, logits in out.items():
            assert np.abs(logits[i][real] - ref).max() <= ATOL, (name, i)


@pytest.mark.parametrize("remat", [False, True])
def test_fused_grads_match_einsum(models, remat):
    """Max absolute difference per parameter <= 1e-4 (the grads themselves are O(0.1..10))."""
    hf, ours, folder = models
    ids, mask = mixed_batch(hf.config.vocab_size, seed=1)
    weights = jnp.asarray(np.random.default_rng(2).uniform(0.5, 1.5, ids.shape) * mask, jnp.float32)
    args = (jnp.asarray(ids), jnp.asarray(mask), weights)
    fused = load_hf_model(folder, attention="fused", remat=True) if remat else ours["fused"]
    g_ref = nnx.to_pure_dict(_grad(ours["einsum"], *args))
    g_fused = nnx.to_pure_dict(_grad(fused, *args))
    leaves_ref, leaves_fused = jax.tree.leaves(g_ref), jax.tree.leaves(g_fused)
    assert len(leaves_ref) == len(leaves_fused)
    assert max(float(jnp.abs(g).max()) for g in leaves_ref) > 0.1  # not vacuous
    for a, b in zip(leaves_ref, leaves_fused):
        assert np.isfinite(np.asarray(b)).all()
        assert float(jnp.abs(a - b).max()) <= ATOL


def test_padding_only_batch_is_finite(models):
    """Every row padding (lengths clamped to 1): finite logits, and finite grads of a loss over all
    (padding) positions, with the fused kernel."""
    hf, ours, _ = models
    ids, _ = mixed_batch(hf.config.vocab_size)
    mask = jnp.zeros(ids.shape, jnp.int32)
    model = ours["fused"]
    assert np.isfinite(np.asarray(_forward(model, jnp.asarray(ids), mask))).all()
    grads = _grad(model, jnp.asarray(ids), mask, jnp.ones(ids.shape, jnp.float32))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_sharded_fused_forward_equals_unsharded(models):
    hf, ours, folder = models
    ids, mask = (jnp.asarray(x) for x in mixed_batch(hf.config.vocab_size))
    sharded = load_hf_model(folder, mesh=make_mesh(fsdp=2, tp=2), attention="fused")
    real = np.asarray(mask).astype(bool)
    np.testing.assert_allclose(np.asarray(_forward(sharded, ids, mask))[real],
                               np.asarray(_forward(ours["fused"], ids, mask))[real], atol=1e-5)


def test_fused_model_still_decodes_with_einsum_cache(models):
    """The sampler's cached prefill/decode on a fused model equals its own full forward."""
    hf, ours, _ = models
    model = ours["fused"]
    ids, mask = left_padded_batch([6, 2, 4], hf.config.vocab_size, seed=1)
    ids, mask = jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy())
    extra = jax.random.randint(jax.random.key(0), (3, 3), 3, hf.config.vocab_size)
    full = _forward(model, jnp.concatenate([ids, extra], axis=1),
                    jnp.concatenate([mask, jnp.ones_like(extra)], axis=1))
    step = nnx.jit(lambda m, i, k, c: m(i, k, c))
    logits, cache = step(model, ids, mask, model.init_cache(batch=3, max_len=12))
    pieces = [logits[:, -1]]
    for t in range(extra.shape[1] - 1):
        logits, cache = step(model, extra[:, t:t + 1], jnp.ones((3, 1), jnp.int32), cache)
        pieces.append(logits[:, -1])
    np.testing.assert_allclose(np.asarray(jnp.stack(pieces, axis=1)), np.asarray(full[:, ids.shape[1] - 1:-1]),
                               atol=1e-5)


def test_attention_names():
    assert ATTENTION_IMPLEMENTATIONS == ("auto", "einsum", "fused")
    assert resolve_attention("einsum") == "einsum" and resolve_attention("fused") == "fused"
    assert jax.default_backend() == "cpu"
    assert resolve_attention("auto") == "einsum"  # on CPU the einsum kernel is as fast (see attention.py)
    cfg = Qwen2Config(**TINY_CONFIGS["untied_2kv"])
    assert nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0))).attention == "einsum"
    with pytest.raises(ValueError, match="attention 'bogus' is not one of auto, einsum, fused"):
        Qwen2ForCausalLM(cfg, attention="bogus", rngs=nnx.Rngs(0))
