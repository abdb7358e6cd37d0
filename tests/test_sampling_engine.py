"""The JAX rollout engine against Hugging Face transformers on tiny random Qwen2 checkpoints."""

import itertools
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from jgrpo.model import make_mesh
from jgrpo.sampling import JaxEngine, SamplingParams, make_engine
from ports.hf_load import load_hf_model
from tests.tiny_models import TINY_CONFIGS, make_hf_model

TOKENIZER = Path(__file__).parents[1] / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b"
MAX_NEW = 12
LENGTHS = [5, 17, 1, 9]  # mixed, so every batch is left-padded


def _prompts(vocab, lengths=LENGTHS, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, n).tolist() for n in lengths]


def _hf_greedy(hf, prompt, eos, min_new=0):
    """HF generate on the unpadded prompt, cut after the first EOS, and its finish reason."""
    ids = torch.tensor([prompt])
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, min_new_tokens=min_new,
                      do_sample=False, eos_token_id=list(eos), pad_token_id=0)[0, len(prompt):].tolist()
    for i, t in enumerate(out):
        if t in eos:
            return out[:i + 1], "stop"
    return out, "length"


def _eos_from_greedy(hf, prompts):
    """Two EOS ids that greedy decoding reaches mid-completion in some rows but not in others."""
    never = hf.config.vocab_size  # outside the vocabulary: never generated
    free = [_hf_greedy(hf, p, eos=[never])[0] for p in prompts]
    for pair in itertools.combinations(sorted(set().union(*free)), 2):
        stopped = [bool(set(pair) & set(f[1:])) for f in free]
        if any(stopped) and not all(stopped) and not any(set(pair) & {f[0]} for f in free):
            return list(pair)
    raise AssertionError("no pair of tokens stops only some rows; change the seed")


@pytest.fixture(scope="module")
def untied(tmp_path_factory):
    folder = tmp_path_factory.mktemp("untied")
    hf = make_hf_model(folder, seed=0)
    return hf, folder


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(TOKENIZER)


@pytest.fixture(scope="module")
def engine_a(untied, tokenizer):
    """Live mode on a 2 x 2 (data, fsdp) mesh: samples straight from the training model's arrays."""
    hf, folder = untied
    model = load_hf_model(folder, mesh=make_mesh(data=2, fsdp=2))
    eos = _eos_from_greedy(hf, _prompts(TINY_CONFIGS["untied_2kv"]["vocab_size"]))
    return make_engine("jax", model, eos_token_ids=eos, tokenizer=tokenizer), model


def test_greedy_equals_hf_generate_with_several_eos_ids(untied, engine_a, tokenizer):
    hf, _ = untied
    engine, _ = engine_a
    prompts = _prompts(hf.config.vocab_size)
    out = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW))
    reasons = []
    for prompt, c in zip(prompts, out):
        ref, reason = _hf_greedy(hf, prompt, engine.eos_token_ids)
        assert c.token_ids.tolist() == ref
        assert c.finish_reason == reason
        assert c.text == tokenizer.decode(ref, skip_special_tokens=True)
        reasons.append(reason)
    assert {"stop", "length"} <= set(reasons), "the EOS ids were meant to stop some rows, not all"
    for c in out:  # a stopped completion ends with its EOS, and holds no other
        eos_at = [i for i, t in enumerate(c.token_ids) if t in engine.eos_token_ids]
        assert eos_at == ([len(c.token_ids) - 1] if c.finish_reason == "stop" else [])


def test_min_new_tokens_suppresses_eos(untied, engine_a):
    hf, _ = untied
    engine, _ = engine_a
    prompts = _prompts(hf.config.vocab_size)
    out = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW))
    for prompt, c in zip(prompts, out):
        ref, _ = _hf_greedy(hf, prompt, engine.eos_token_ids, min_new=MAX_NEW)
        assert c.token_ids.tolist() == ref
        assert c.finish_reason == "length" and len(c.token_ids) == MAX_NEW
        assert not set(c.token_ids.tolist()) & set(engine.eos_token_ids)


def test_sampled_logprobs_are_the_models_and_reproducible(untied, engine_a):
    hf, _ = untied
    engine, _ = engine_a
    prompts = _prompts(hf.config.vocab_size)
    params = SamplingParams(n=2, temperature=0.8, max_new_tokens=MAX_NEW, seed=5)
    engine.calls = 7
    out = engine.generate(prompts, params)
    assert [c.prompt_index for c in out] == [0, 0, 1, 1, 2, 2, 3, 3]
    for c in out:
        ids = torch.tensor([prompts[c.prompt_index] + c.token_ids.tolist()])
        with torch.no_grad():
            logp = torch.log_softmax(hf(ids).logits[0].double(), -1)
        p = len(prompts[c.prompt_index])
        ref = logp[torch.arange(p - 1, ids.shape[1] - 1), ids[0, p:]].numpy()
        np.testing.assert_allclose(c.logprobs, ref, atol=1e-4)  # "raw": the untempered model's

    engine.calls = 7
    again = engine.generate(prompts, params)
    assert all(np.array_equal(a.token_ids, b.token_ids) for a, b in zip(out, again))
    other_call = engine.generate(prompts, params)
    other_seed = engine.generate(prompts, SamplingParams(n=2, temperature=0.8, max_new_tokens=MAX_NEW, seed=6))
    for different in (other_call, other_seed):
        assert any(not np.array_equal(a.token_ids, b.token_ids) for a, b in zip(out, different))
    assert not np.array_equal(out[0].token_ids, out[1].token_ids)  # a prompt's n samples differ


@pytest.mark.parametrize("top_k", [0, 5])
def test_processed_logprobs_are_the_drawing_distributions(untied, engine_a, top_k):
    """logprobs_mode processed: log-probs under softmax(logits / temperature), renormalised over the
    top-k when top-k filters, i.e. the distribution each token was drawn from."""
    hf, _ = untied
    _, model = engine_a
    engine = make_engine("jax", model, eos_token_ids=[], logprobs_mode="processed")
    prompts = _prompts(hf.config.vocab_size)
    temperature = 0.6
    out = engine.generate(prompts, SamplingParams(temperature=temperature, top_k=top_k, max_new_tokens=MAX_NEW,
                                                  seed=3))
    for c in out:
        ids = torch.tensor([prompts[c.prompt_index] + c.token_ids.tolist()])
        p = len(prompts[c.prompt_index])
        with torch.no_grad():
            logits = hf(ids).logits[0, p - 1:-1].double() / temperature
        if top_k:
            kth = logits.topk(top_k, -1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -torch.inf)
        ref = torch.log_softmax(logits, -1)[torch.arange(len(c.token_ids)), ids[0, p:]].numpy()
        np.testing.assert_allclose(c.logprobs, ref, atol=1e-4)


def _perturb(model, scale=0.05, seed=0):
    key = jax.random.key(seed)
    for path, var in nnx.iter_graph(model):
        if isinstance(var, nnx.Param):
            key, sub = jax.random.split(key)
            var[...] = var[...] + scale * jax.random.normal(sub, var.shape, var.dtype)


def test_a_remat_model_samples_the_same_tokens(untied, engine_a):
    """Training with remat (the open-rs recipes) and sampling with the JAX engine: the cached
    decode path does not recompute, so it traces, and gives the same greedy tokens."""
    hf, folder = untied
    engine, _ = engine_a
    remat = make_engine("jax", load_hf_model(folder, mesh=make_mesh(data=2, fsdp=2), remat=True),
                        eos_token_ids=engine.eos_token_ids)
    prompts = _prompts(hf.config.vocab_size)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW)
    assert [c.token_ids.tolist() for c in remat.generate(prompts, greedy)] == \
        [c.token_ids.tolist() for c in engine.generate(prompts, greedy)]


def test_tied_model_on_its_own_mesh_and_sync(tmp_path):
    """Copy mode: the sampler holds its own copy on a (fsdp 2, tp 2) mesh; it sees new weights
    only after sync_weights, and then exactly HF's greedy tokens for those weights."""
    hf = make_hf_model(tmp_path, seed=1, **TINY_CONFIGS["tied_1kv"])
    model = load_hf_model(tmp_path)
    engine = JaxEngine(model, eos_token_ids=[hf.config.eos_token_id], mesh=make_mesh(fsdp=2, tp=2))
    prompts = _prompts(hf.config.vocab_size, seed=1)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW)
    before = engine.generate(prompts, greedy)
    for prompt, c in zip(prompts, before):
        assert c.token_ids.tolist() == _hf_greedy(hf, prompt, [hf.config.eos_token_id])[0]

    _perturb(model, scale=0.5)
    stale = engine.generate(prompts, greedy)
    assert all(np.array_equal(a.token_ids, b.token_ids) for a, b in zip(before, stale))
    sync = engine.sync_weights(model)
    assert sync.seconds >= 0 and sync.bytes == sum(x.nbytes for x in jax.tree.leaves(nnx.state(model)))
    after = engine.generate(prompts, greedy)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(torch.from_numpy(np.asarray(_hf_tensor(model, name))))
    for prompt, c in zip(prompts, after):
        assert c.token_ids.tolist() == _hf_greedy(hf, prompt, [hf.config.eos_token_id])[0]
    assert any(not np.array_equal(a.token_ids, b.token_ids) for a, b in zip(before, after))


def _hf_tensor(model, name):
    from ports.qwen2_names import flax_path

    path, transposed = flax_path(name)
    node = model
    for key in path:
        node = node[key] if isinstance(key, int) else getattr(node, key)
    x = np.array(node[...])
    return x.T if transposed else x


def test_shapes_compile_a_handful_of_programs(tmp_path):
    make_hf_model(tmp_path, seed=2, **TINY_CONFIGS["untied_1kv_theta500"])
    model = load_hf_model(tmp_path, mesh=make_mesh(data=4, fsdp=1))
    engine = JaxEngine(model, eos_token_ids=[2], min_prompt_bucket=32)
    rng = np.random.default_rng(0)
    for i in range(12):
        batch = int(rng.integers(1, 9))  # buckets 4 and 8: the data axis has 4 devices
        lengths = rng.integers(1, 65, batch).tolist()  # buckets 32 and 64
        lengths[0] = 60 if i % 2 else 3
        # temperature, min_new_tokens and the seed are traced: changing them compiles nothing
        params = SamplingParams(temperature=float(rng.uniform(0.5, 1.5)), max_new_tokens=3,
                                min_new_tokens=int(rng.integers(0, 4)), seed=i)
        out = engine.generate(_prompts(97, lengths, seed=i), params)
        assert len(out) == batch and all(1 <= len(c.token_ids) <= 3 for c in out)
    assert engine.traces <= 4
