"""vLLM (the CPU build) loads an exported folder as is, and takes the in-memory iterator's tensors
through `reload_weights`: greedy tokens equal transformers' in fp32 both times. A tied model's
reload needs lm_head.weight (tied_lm_head=True), which vLLM's initial load does not."""

import numpy as np
import pytest
import torch

from ports.hf_export import export_hf
from ports.hf_load import load_hf_params
from ports.hf_tensors import hf_tensors
from tests.tiny_models import make_hf_model

pytestmark = pytest.mark.vllm

# vLLM's CPU attention needs head_dim >= 32.
VLLM_TINY = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, tie_word_embeddings=False)
PROMPTS = [[5, 17, 33, 2 + 100], [9, 9, 41]]
NEW_TOKENS = 8


def hf_greedy(model, prompt):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
                             attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=0)
    return out[0, len(prompt):].tolist()


def as_torch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array))  # fp32 here; bf16 would go through a uint16 view


@pytest.mark.parametrize("tied", [False, True])
def test_vllm_loads_export_and_reloads_from_iterator(tmp_path, monkeypatch, tied):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    vllm = pytest.importorskip("vllm")
    config = {**VLLM_TINY, "tie_word_embeddings": tied}
    first = make_hf_model(tmp_path / "first", seed=1, **config)
    second = make_hf_model(tmp_path / "second", seed=2, **config)
    cfg, params = load_hf_params(tmp_path / "first")
    export_hf(params, cfg, tmp_path / "export")

    llm = vllm.LLM(model=str(tmp_path / "export"), dtype="float32", enforce_eager=True, max_model_len=64,
                   skip_tokenizer_init=True, seed=0)
    greedy = vllm.SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS)

    def vllm_greedy():
        outs = llm.generate([{"prompt_token_ids": p} for p in PROMPTS], greedy, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    assert vllm_greedy() == [hf_greedy(first, p) for p in PROMPTS]
    _, second_params = load_hf_params(tmp_path / "second")

    def push(**options):
        pairs = [(name, as_torch(array)) for name, array in hf_tensors(second_params, **options)]
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": pairs})
        llm.reset_prefix_cache()

    expected = [hf_greedy(second, p) for p in PROMPTS]
    if tied:  # without lm_head.weight, vLLM 0.32 restores the old head: drop tied_lm_head when this fails
        push()
        assert vllm_greedy() != expected
    push(tied_lm_head=tied)
    assert vllm_greedy() == expected
    del llm
