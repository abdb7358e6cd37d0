"""The decoder in Flax NNX against transformers' Qwen2ForCausalLM (torch, CPU); the other families: test_families."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jgrpo.model import (ConfigError, DtypePolicy, Qwen2Config, Qwen2ForCausalLM, ShardingError, build_sharded,
                         make_mesh)
from ports.hf_load import load_hf_model
from tests.tiny_models import TINY_CONFIGS, left_padded_batch, make_hf_model

SHARED_CONFIG = Path(__file__).resolve().parents[1] / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b/config.json"
LENGTHS = [7, 3, 11, 1]  # mixed lengths, left padding, one single-token row


def torch_logits(hf, ids, mask):
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits.float().numpy()


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf = make_hf_model(folder, **TINY_CONFIGS[request.param])
    return folder, hf


def test_fp32_logits_match_transformers(checkpoint):
    folder, hf = checkpoint
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size)
    ref = torch_logits(hf, ids, mask)
    model = load_hf_model(folder)
    logits, _ = model(jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    real = mask.numpy().astype(bool)  # padding positions are undefined in both
    assert np.abs(np.asarray(logits)[real] - ref[real]).max() <= 1e-4


def test_left_padding_does_not_change_logits(checkpoint):
    folder, hf = checkpoint
    model = load_hf_model(folder)
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size)
    batched, _ = model(jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    row = 1
    n = LENGTHS[row]
    alone, _ = model(jnp.asarray(ids.numpy()[row:row + 1, -n:]), jnp.ones((1, n), jnp.int32))
    np.testing.assert_allclose(np.asarray(batched)[row, -n:], np.asarray(alone)[0], atol=1e-5)


# bf16 compute against the fp32 reference: bf16 keeps 8 bits of mantissa, so each of the ~10
# matmul/norm stages adds ~0.4% relative error; logits of these tiny models have magnitude ~1.
BF16_LOGIT_ATOL = 0.1


def test_bf16_compute_close_to_fp32_reference(checkpoint):
    folder, hf = checkpoint
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size)
    ref = torch_logits(hf, ids, mask)
    model = load_hf_model(folder, policy=DtypePolicy(param_dtype=jnp.float32, compute_dtype=jnp.bfloat16))
    logits, _ = model(jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    assert logits.dtype == jnp.float32
    real = mask.numpy().astype(bool)
    err = np.abs(np.asarray(logits)[real] - ref[real])
    assert err.max() <= BF16_LOGIT_ATOL
    assert err.max() > 0  # it really computed in bf16


def test_bf16_params_and_compute(checkpoint):
    folder, hf = checkpoint
    model = load_hf_model(folder, policy=DtypePolicy(param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16))
    assert model.layers[0].mlp.up_proj.kernel[...].dtype == jnp.bfloat16
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size)
    ref = torch_logits(hf.to(torch.bfloat16), ids, mask)
    hf.to(torch.float32)
    logits, _ = model(jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    real = mask.numpy().astype(bool)
    assert np.abs(np.asarray(logits)[real] - ref[real]).max() <= BF16_LOGIT_ATOL


def test_kv_cache_decoding_equals_full_forward(checkpoint):
    folder, hf = checkpoint
    model = load_hf_model(folder)
    ids, mask = left_padded_batch([6, 2, 4], hf.config.vocab_size, seed=1)
    ids, mask = jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy())
    extra = jax.random.randint(jax.random.key(0), (3, 5), 3, hf.config.vocab_size)
    full_ids = jnp.concatenate([ids, extra], axis=1)
    full_mask = jnp.concatenate([mask, jnp.ones_like(extra)], axis=1)
    full, _ = model(full_ids, full_mask)

    step = nnx.jit(lambda m, i, k, c: m(i, k, c))
    cache = model.init_cache(batch=3, max_len=16)
    logits, cache = step(model, ids, mask, cache)  # prefill
    pieces = [logits[:, -1]]
    for t in range(extra.shape[1] - 1):
        logits, cache = step(model, extra[:, t:t + 1], jnp.ones((3, 1), jnp.int32), cache)
        pieces.append(logits[:, -1])
    incremental = jnp.stack(pieces, axis=1)
    np.testing.assert_allclose(np.asarray(incremental), np.asarray(full[:, ids.shape[1] - 1:-1]), atol=1e-5)


def test_remat_gives_same_logits_and_grads(checkpoint):
    folder, hf = checkpoint
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size)
    ids, mask = jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy())

    def loss(m):
        return m(ids, mask)[0].mean()

    plain = load_hf_model(folder)
    remat = load_hf_model(folder, remat=True)
    g1 = nnx.grad(loss)(plain)
    g2 = nnx.grad(loss)(remat)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_sharded_forward_equals_unsharded(checkpoint):
    folder, hf = checkpoint
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size)
    ids, mask = jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy())
    single, _ = load_hf_model(folder)(ids, mask)
    for fsdp, tp in [(4, 1), (2, 2), (1, 4)]:
        mesh = make_mesh(fsdp=fsdp, tp=tp)
        sharded = load_hf_model(folder, mesh=mesh)
        assert len(sharded.embed_tokens[...].sharding.device_set) == 4
        logits, _ = nnx.jit(lambda m, i, k: m(i, k))(sharded, ids, mask)
        np.testing.assert_allclose(np.asarray(logits), np.asarray(single), atol=1e-5)


def test_forward_compiles_once_per_shape(checkpoint):
    folder, hf = checkpoint
    model = load_hf_model(folder)
    traces = []

    @nnx.jit
    def forward(m, i, k):
        traces.append(1)
        return m(i, k)[0]

    for seed in range(3):
        ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size, seed=seed)
        forward(model, jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    assert len(traces) == 1


def test_real_config_parameter_count_and_sharded_build():
    cfg = Qwen2Config.from_json_file(SHARED_CONFIG)
    abstract = nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0)))
    n = sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert n == 1_777_088_000  # DeepSeek-R1-Distill-Qwen-1.5B, untied embeddings
    mesh = make_mesh(fsdp=4)
    small = Qwen2Config(**{**cfg.__dict__, "num_hidden_layers": 1, "vocab_size": 1024})
    model = build_sharded(lambda: Qwen2ForCausalLM(small, rngs=nnx.Rngs(0)), mesh)
    kernel = model.layers[0].mlp.gate_proj.kernel[...]
    assert kernel.sharding.spec[0] == "fsdp"
    assert kernel.addressable_shards[0].data.shape == (small.hidden_size // 4, small.intermediate_size)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.pop("num_key_value_heads"), "num_key_value_heads"),
    (lambda d: d.update(use_sliding_window=True), "use_sliding_window"),
    (lambda d: d.update(model_type="mistral"), "model_type"),
    (lambda d: d.update(model_type="llama"), "architectures"),  # a supported type, but not these weights
    (lambda d: d.update(hidden_act="gelu"), "hidden_act"),
])
def test_bad_config_names_the_field(edit, field):
    d = json.loads(SHARED_CONFIG.read_text())
    edit(d)
    with pytest.raises(ConfigError, match=field):
        Qwen2Config.from_hf_dict(d)


def test_rope_theta_from_transformers5_rope_parameters():
    d = json.loads(SHARED_CONFIG.read_text())
    d.pop("rope_theta")
    d["rope_parameters"] = {"rope_type": "default", "rope_theta": 12345.0}
    assert Qwen2Config.from_hf_dict(d).rope_theta == 12345.0


def test_mesh_that_would_replicate_a_large_weight_is_refused():
    """tp 3 on the 1.5B: vocab 151,936, intermediate 8,960 and KV width 256 do not split in three;
    replicating them silently would put 6.6 of its 7.1 GB on every device."""
    from ports.params import abstract_params

    cfg = Qwen2Config.from_json_file(SHARED_CONFIG)
    with pytest.raises(ShardingError, match=r"vocab dimension \(151936\) of a \[151936, 1536\] weight .* tp = 3"):
        abstract_params(cfg, mesh=make_mesh(fsdp=1, tp=3, devices=jax.devices()[:3]))
    abstract_params(cfg, mesh=make_mesh(fsdp=4))  # fsdp shards the 1,536-wide embed axis: fine
