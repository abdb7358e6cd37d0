"""`python -m jgrpo.train --model.path` on a tiny random checkpoint of every supported family (the
arithmetic task's tokenizer, 2 steps): the run completes and its export is the family's own HF folder
with the trained weights. One family also runs with the vLLM engine and its weight sync; an
unsupported family is refused at start-up in one line."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from jgrpo.tasks.arithmetic import EOS_ID, VOCAB_SIZE, write_tokenizer
from ports.hf_load import load_hf_model
from tests.test_train import train
from tests.tiny_models import FAMILY_CONFIGS, make_hf_model

SHORT = ["--data.source", "arithmetic", "--train.max_steps", "2", "--train.prompts_per_step", "4",
         "--rollout.num_generations", "4", "--loss.micro_batch_size", "16", "--train.save_steps", "2",
         "--log.completions_per_step", "2"]


def tiny_model(folder, family):
    config = {**FAMILY_CONFIGS[family], "vocab_size": VOCAB_SIZE, "eos_token_id": EOS_ID, "bos_token_id": None,
              "pad_token_id": EOS_ID}
    hf = make_hf_model(folder, **config)
    write_tokenizer(folder)
    return hf


@pytest.mark.parametrize("family, engine", [(f, "jax") for f in sorted(FAMILY_CONFIGS)] + [("llama3_tied", "vllm")])
def test_two_steps_on_each_family_complete_and_export(family, engine, tmp_path):
    if engine == "vllm":
        pytest.importorskip("vllm")
    hf = tiny_model(tmp_path / "model", family)
    run = tmp_path / "run"
    train("--model.path", str(tmp_path / "model"), *SHORT, "--rollout.engine", engine,
          "--train.output_dir", str(run), env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2

    export = run / "hf" / "final"
    config = json.loads((export / "config.json").read_text())
    assert config["model_type"] == hf.config.model_type and config["architectures"] == [type(hf).__name__]
    assert config["tie_word_embeddings"] == hf.config.tie_word_embeddings
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(export).eval()
    assert type(reloaded) is type(hf)
    ids = transformers.AutoTokenizer.from_pretrained(export)(["3+4=", "9+9="], add_special_tokens=False,
                                                             return_tensors="pt")["input_ids"]
    with torch.no_grad():
        theirs = reloaded(ids).logits.numpy()
    ours, _ = load_hf_model(export)(jnp.asarray(ids.numpy()), jnp.ones(ids.shape, jnp.int32))
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4)
    trained, initial = reloaded.state_dict(), hf.state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)  # the updates reached the export


def test_an_unsupported_family_is_refused_at_start_up_in_one_line(tmp_path):
    tiny_model(tmp_path / "model", "llama3_untied")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    proc = train("--model.path", str(tmp_path / "model"), *SHORT, "--train.output_dir", str(tmp_path / "run"),
                 check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'mistral'" in lines[0] and str(tmp_path / "model" / "config.json") in lines[0]
    assert all(t in lines[0] for t in ("qwen2", "qwen3", "llama")), lines[0]


def test_the_generic_recipe_runs_a_model_given_by_path(tmp_path):
    """conf/grpo_math.yaml with only --model.path and what a 2-core CPU needs changed (no GPU layout,
    the JAX engine, a tiny batch and completion): its data, prompts, rewards and loss settings run."""
    import shutil

    from jgrpo.data import BUNDLED_TOKENIZER_DIR, load_tokenizer
    from tests.test_evaluate import TOKENIZER_FILES

    vocab = -(-len(load_tokenizer(BUNDLED_TOKENIZER_DIR)) // 64) * 64
    make_hf_model(tmp_path / "model", **{**FAMILY_CONFIGS["llama3_tied"], "vocab_size": vocab,
                                         "max_position_embeddings": 2048, "bos_token_id": 151646,
                                         "eos_token_id": 151643, "pad_token_id": 151643})
    for name in TOKENIZER_FILES:
        shutil.copy(BUNDLED_TOKENIZER_DIR / name, tmp_path / "model" / name)
    run = tmp_path / "run"
    cpu = ["--devices.gpu_layout", "false", "--rollout.engine", "jax", "--model.compute_dtype", "float32",
           "--train.max_steps", "1", "--train.prompts_per_step", "2", "--rollout.num_generations", "2",
           "--loss.micro_batch_size", "4", "--loss.bnpo_group_size", "2", "--rollout.max_completion_length", "8"]
    train("--config", "grpo_math", "--model.path", str(tmp_path / "model"), *cpu, "--train.output_dir", str(run))
    row = json.loads((run / "metrics.jsonl").read_text())
    assert {"rewards/accuracy/mean", "rewards/tag_count/mean"} <= set(row)
    assert json.loads((run / "hf" / "final" / "config.json").read_text())["model_type"] == "llama"
