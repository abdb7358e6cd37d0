"""Every supported family (Qwen2, Qwen3, Llama 3 with its RoPE scaling; tied and untied) through the
one decoder and the one set of bridges, against transformers' torch models (CPU, fp32):
logits on mixed-length left-padded batches, greedy generation, HF -> Orbax -> HF bit for bit and
transformers loading the export. Config parsing of the real Hub configs and the refusals too."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from jgrpo.model import FAMILIES, ConfigError, Qwen2Config, Qwen2ForCausalLM, RopeScaling, make_mesh
from jgrpo.model.qwen2 import rope_frequencies
from jgrpo.sampling import SamplingParams, make_engine
from ports.hf_export import export_hf
from ports.hf_load import load_hf_model, load_hf_params
from ports.orbax_ckpt import restore_params, save_params
from tests.test_ports_roundtrip import assert_same_tensors, read_all
from tests.tiny_models import FAMILY_CONFIGS, LLAMA3_ROPE, hf_config, left_padded_batch, make_hf_model

# Mixed lengths, left padding, one single-token row; 40 positions reach every band of the tiny
# llama3 scaling (wavelengths 16 to 64 are blended, longer ones slowed down 8x).
LENGTHS = [7, 3, 40, 1]
MAX_NEW = 10


def torch_logits(hf, ids, mask):
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits.float().numpy()


def max_logit_gap(ours, ref, mask):
    real = mask.numpy().astype(bool)  # padding positions are undefined in both
    return np.abs(np.asarray(ours)[real] - ref[real]).max()


@pytest.fixture(scope="module", params=sorted(FAMILY_CONFIGS))
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf = make_hf_model(folder, seed=1, proj_scale=4.0, **FAMILY_CONFIGS[request.param])
    return request.param, folder, hf


def test_fp32_logits_match_transformers_on_a_sharded_mesh(checkpoint):
    """On a (fsdp 2, tp 2) mesh: the sharding table places every family's parameters (qwen3's q/k
    norms replicated, its 128-wide q projection split over tp)."""
    name, folder, hf = checkpoint
    model = load_hf_model(folder, mesh=make_mesh(fsdp=2, tp=2))
    attn = model.layers[0].self_attn
    assert (attn.q_proj.bias is not None) == (hf.config.model_type == "qwen2")
    assert (attn.q_norm is not None) == (hf.config.model_type == "qwen3")
    assert (model.lm_head is None) == hf.config.tie_word_embeddings
    if attn.q_norm is not None:
        assert attn.q_norm.scale[...].sharding.spec == jax.sharding.PartitionSpec(None)
    assert attn.q_proj.kernel[...].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tp")
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size)
    logits, _ = nnx.jit(lambda m, i, k: m(i, k))(model, jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    assert max_logit_gap(logits, torch_logits(hf, ids, mask), mask) <= 1e-4


def _hf_greedy(hf, prompt):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_jax_sampler_greedy_equals_transformers_generate(checkpoint):
    """The sampler's batched, left-padded, KV-cached decode against generate on each prompt alone."""
    name, folder, hf = checkpoint
    engine = make_engine("jax", load_hf_model(folder), eos_token_ids=[])
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, hf.config.vocab_size, n).tolist() for n in (5, 17, 1, 9)]
    out = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW))
    got = [c.token_ids.tolist() for c in out]
    assert got == [_hf_greedy(hf, p) for p in prompts]
    assert len({tuple(g) for g in got}) > 1  # the prompts lead somewhere different: the context matters


def test_hf_orbax_hf_is_bit_exact_and_transformers_loads_the_export(checkpoint, tmp_path):
    name, folder, hf = checkpoint
    cfg, params = load_hf_params(folder, mesh=make_mesh(fsdp=4))
    assert cfg.model_type == hf.config.model_type
    save_params(tmp_path / "orbax", params, cfg)
    cfg2, restored = restore_params(tmp_path / "orbax", mesh=make_mesh(fsdp=1, tp=4))
    assert cfg2 == cfg
    export_hf(restored, cfg2, tmp_path / "out")
    assert_same_tensors(read_all(tmp_path / "out"), read_all(folder))

    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["model_type"] == hf.config.model_type
    assert written["architectures"] == [type(hf).__name__]
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(reloaded) is type(hf)
    for key in ("head_dim", "tie_word_embeddings", "num_key_value_heads", "rms_norm_eps"):
        assert getattr(reloaded.config, key, None) == getattr(hf.config, key, None), key
    assert reloaded.config.rope_parameters == hf.config.rope_parameters
    ids, mask = left_padded_batch(LENGTHS, hf.config.vocab_size, seed=2)
    ours, _ = load_hf_model(tmp_path / "out")(jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    assert max_logit_gap(ours, torch_logits(reloaded, ids, mask), mask) <= 1e-4


def test_llama3_rope_frequencies_equal_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    for scaling in (LLAMA3_ROPE, {**LLAMA3_ROPE, "factor": 32.0, "original_max_position_embeddings": 100}):
        kw = {k: v for k, v in FAMILY_CONFIGS["llama3_untied"].items() if k != "model_type"}
        hf = hf_config("llama", **{**kw, "rope_scaling": scaling})
        want, attention_factor = ROPE_INIT_FUNCTIONS["llama3"](hf)
        assert attention_factor == 1.0
        cfg = Qwen2Config.from_hf_dict(hf.to_dict())
        np.testing.assert_allclose(np.asarray(rope_frequencies(cfg)), want.numpy(), rtol=1e-6)
        plain = np.asarray(rope_frequencies(Qwen2Config(**{**cfg.__dict__, "rope_scaling": None})))
        got = np.asarray(rope_frequencies(cfg))
        assert (got == plain).any() and (got == plain / scaling["factor"]).any() and (
            (got != plain) & (got != plain / scaling["factor"])).any()  # all three bands


# Real Hub configs (abridged to what a model reads), with the parameter counts their model cards give.
HUB_CONFIGS = {
    "Qwen/Qwen2.5-Math-1.5B": (dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=151936, hidden_size=1536,
        intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
        max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=10000, sliding_window=4096, max_window_layers=21,
        use_sliding_window=False, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643,
        hidden_act="silu", use_mrope=False, torch_dtype="bfloat16"), 1_543_714_304),
    "Qwen/Qwen3-0.6B": (dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=151936, hidden_size=1024,
        intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000, rope_scaling=None, attention_bias=False,
        sliding_window=None, max_window_layers=28, use_sliding_window=False, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645, hidden_act="silu", torch_dtype="bfloat16"), 596_049_920),
    "Qwen/Qwen3-8B": (dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=151936, hidden_size=4096,
        intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, rope_theta=1000000, attention_bias=False, tie_word_embeddings=False,
        hidden_act="silu"), 8_190_735_360),
    "meta-llama/Llama-3.2-1B": (dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256, hidden_size=2048,
        intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
        max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0, attention_bias=False, mlp_bias=False,
        rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        tie_word_embeddings=True, pretraining_tp=1, bos_token_id=128000, eos_token_id=128001, hidden_act="silu",
        torch_dtype="bfloat16"), 1_235_814_400),
    "meta-llama/Llama-3.1-8B-Instruct": (dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256, hidden_size=4096,
        intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        tie_word_embeddings=False, bos_token_id=128000, eos_token_id=[128001, 128008, 128009], hidden_act="silu"),
     8_030_261_248),
}


@pytest.mark.parametrize("hub_id", sorted(HUB_CONFIGS))
def test_hub_configs_parse_to_their_published_size_and_write_back(hub_id):
    d, n_params = HUB_CONFIGS[hub_id]
    cfg = Qwen2Config.from_hf_dict(d)
    abstract = nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0)))
    assert sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == n_params
    written = cfg.to_hf_dict(torch_dtype="bfloat16")
    assert Qwen2Config.from_hf_dict(written) == cfg
    assert written["architectures"] == d["architectures"] and written["model_type"] == d["model_type"]
    # transformers reads what we write as the same model
    theirs = transformers.AutoConfig.for_model(**written)
    assert type(theirs).__name__ == d["architectures"][0].replace("ForCausalLM", "Config")
    assert theirs.rope_parameters["rope_type"] == (d.get("rope_scaling") or {}).get("rope_type", "default")
    assert Qwen2Config.from_hf_dict(theirs.to_dict()) == cfg


@pytest.mark.parametrize("model_type", ["mistral", "qwen3_moe", "gemma3"])
def test_unsupported_model_type_is_refused_in_one_line_naming_the_supported(model_type):
    d = {**HUB_CONFIGS["Qwen/Qwen3-0.6B"][0], "model_type": model_type, "architectures": ["SomethingForCausalLM"]}
    with pytest.raises(ConfigError) as e:
        Qwen2Config.from_hf_dict(d)
    msg = str(e.value)
    assert "\n" not in msg and repr(model_type) in msg
    assert all(t in msg for t in FAMILIES)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(architectures=["Qwen3ForSequenceClassification"]), "architectures"),
    (lambda d: d.update(attention_bias=True), "attention_bias"),
    (lambda d: d.update(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope type 'yarn'"),
    (lambda d: d.update(layer_types=["sliding_attention"] * 28), "sliding_attention"),
    (lambda d: d.update(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "low_freq_factor"),
    (lambda d: d.update(head_dim=None, hidden_size=1000), "divisible"),
])
def test_what_the_decoder_lacks_is_refused(edit, words):
    d = dict(HUB_CONFIGS["Qwen/Qwen3-0.6B"][0])
    edit(d)
    with pytest.raises(ConfigError, match=words):
        Qwen2Config.from_hf_dict(d)


def test_family_options_follow_model_type_and_contradictions_are_refused():
    base = dict(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1)
    assert (Qwen2Config(**base).qkv_bias, Qwen2Config(**base).qk_norm) == (True, False)
    assert (Qwen2Config(**base, model_type="qwen3").qkv_bias, Qwen2Config(**base, model_type="qwen3").qk_norm) == \
        (False, True)
    assert Qwen2Config(**base, model_type="llama").head_dim == 4
    with pytest.raises(ConfigError, match="qk_norm=True does not fit model_type 'llama'"):
        Qwen2Config(**base, model_type="llama", qk_norm=True)
    with pytest.raises(ConfigError, match="high_freq_factor"):
        RopeScaling(factor=8.0, low_freq_factor=4.0, high_freq_factor=1.0, original_max_position_embeddings=64)
