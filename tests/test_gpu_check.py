"""scripts/gpu_check.py, the prepared GPU measurements, kept runnable: its --smoke mode runs every
stage at toy sizes on the CPU, and each must succeed with finite, positive numbers."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
STAGES = ["backend", "import_order", "dlpack", "logprobs_vs_hf", "update_1p5b", "attention_layer",
          "reference_logprobs", "jax_sampler"]
# Numbers each stage must report as finite and > 0 (dotted paths into its results).
POSITIVE = {
    "backend": ["device_count", "first_op_s"],
    "dlpack": ["big.bytes", "big.seconds"],
    "logprobs_vs_hf": ["tolerance", "tokens_compared"],
    "update_1p5b": ["params", "init_s", "compile_s", "step_s", "tokens_per_s", "flops_per_step", "tflops_per_s",
                    "mfu", "compiled_memory.peak", "compiled_memory.temp", "compiled_memory.argument"],
    "attention_layer": ["einsum.compile_s", "einsum.fwd_ms", "einsum.fwd_bwd_ms", "einsum.compiled_memory.peak",
                        "fused.compile_s", "fused.fwd_ms", "fused.fwd_bwd_ms", "fused.compiled_memory.peak",
                        "max_abs_output", "fused_speedup"],
    "reference_logprobs": ["compile_s", "seconds", "tokens_per_s", "completion_tokens_per_s",
                           "compiled_memory.peak"],
    "jax_sampler": ["first_call_s", "seconds", "tokens", "tokens_per_s", "ms_per_decode_step"],
}


def get(results: dict, dotted: str):
    for key in dotted.split("."):
        results = results[key]
    return results


def load_gpu_check():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return gpu_check


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    report_path = out / "gpu_check.json"
    assert report_path.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(report_path.read_text()), out


def test_smoke_runs_every_stage_and_all_succeed(smoke):
    proc, report, out = smoke
    failed = {name: (e["status"], e["error"]) for name, e in report["stages"].items() if e["status"] != "ok"}
    assert not failed, f"{failed}\n{proc.stdout}"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(report["stages"]) == STAGES
    assert report["schema"] == "jgrpo-gpu-check/1" and report["smoke"] is True and report["all_ok"] is True
    for number, (name, entry) in enumerate(report["stages"].items(), 1):
        assert entry["number"] == number and entry["error"] is None and entry["seconds"] > 0
        assert (out / entry["log"]).is_file()
    assert report["elapsed_s"] < report["deadline_s"]


def test_smoke_numbers_are_finite_and_positive(smoke):
    _, report, _ = smoke
    for stage, keys in POSITIVE.items():
        results = report["stages"][stage]["results"]
        for key in keys:
            value = get(results, key)
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (stage, key, value)


def test_smoke_checks_hold(smoke):
    _, report, _ = smoke
    r = {name: e["results"] for name, e in report["stages"].items()}
    assert r["backend"]["backend"] == "cpu" and r["backend"]["jax"] and r["backend"]["jaxlib"]
    assert r["import_order"]["jax_first"]["ok"] and r["import_order"]["torch_first"]["ok"]
    for dtype in ("bfloat16", "float32"):
        d = r["dlpack"][dtype]
        assert d["zero_copy"] and d["jax_ptr"] == d["torch_ptr"] and d["values_equal"], d
    lp = r["logprobs_vs_hf"]
    assert lp["within_tolerance"] and 0 <= lp["max_abs_diff"] <= lp["tolerance"] == 1e-4
    assert {"max_abs_diff_einsum", "max_abs_diff_fused"} <= set(lp)
    up = r["update_1p5b"]
    assert up["metrics_finite"] and len(up["step_times_s"]) > up["warmup"]
    assert (up["param_dtype"], up["compute_dtype"], up["remat"], up["loss_type"]) == (
        "float32", "bfloat16", True, "bnpo")
    assert up["peak_bytes_in_use"] is None  # the CPU has no allocator statistics; a GPU must report them
    assert math.isfinite(r["attention_layer"]["max_abs_diff"]) and math.isfinite(
        r["attention_layer"]["max_abs_diff_grad_x"])
    assert r["reference_logprobs"]["logps_finite"]
    s = r["jax_sampler"]
    assert s["completions"] == s["completions_expected"] == 72 and s["tokens"] == 72 * s["new_tokens"]


def test_smoke_markdown_names_every_stage(smoke):
    _, report, out = smoke
    text = (out / "gpu_check.md").read_text()
    assert text.startswith("## GPU check") and "Smoke run" in text and "All 8 stages succeeded." in text
    for entry in report["stages"].values():
        assert f"| {entry['number']} | {entry['title']} | ok |" in text


def test_out_of_time_stages_are_recorded_not_run(tmp_path):
    """A stage with less time left than it needs is skipped with its reason, and the JSON is written."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--stages", "3,1", "--deadline", "1",
                           "--out", str(tmp_path / "r.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["stages"]) == ["backend", "dlpack"]
    for entry in report["stages"].values():
        assert entry["status"] == "skipped" and entry["error"].startswith("out of time")
    text = (tmp_path / "r.md").read_text()
    assert "**skipped**: out of time" in text


def test_a_stage_past_its_guard_is_killed_and_recorded(tmp_path):
    gpu_check = load_gpu_check()
    args = argparse.Namespace(smoke=True, attention="auto")
    status, results, error = gpu_check._run_stage(5, args, 0.5, tmp_path / "stage5.log")  # jax alone needs more
    assert status == "timeout" and error.startswith("time guard") and results == {}


def test_unknown_stage_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--stages", "9", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "no stage 9" in proc.stderr


def test_fused_attention_that_fails_to_compile_falls_back_to_einsum(tmp_path):
    """On a GPU "auto" means cuDNN; if it cannot compile, stages 5 and 7 still measure (with einsum)
    and say so."""
    from flax import nnx

    from jgrpo.model import Qwen2Config, Qwen2ForCausalLM

    gpu_check = load_gpu_check()
    cfg = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    graphdef, params = nnx.split(Qwen2ForCausalLM(cfg, attention="fused", rngs=nnx.Rngs(0)), nnx.Param)
    rec = gpu_check.Recorder(tmp_path / "r.json")
    rec.update(attention="fused")

    def compile_for(g):
        if nnx.merge(g, params).attention == "fused":
            raise RuntimeError("cuDNN | not available")
        return "compiled"

    args = argparse.Namespace(attention="auto")
    compiled, new_graphdef = gpu_check._compile_or_fall_back(rec, args, graphdef, params, compile_for)
    assert compiled == "compiled" and nnx.merge(new_graphdef, params).attention == "einsum"
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["attention"] == "einsum" and "cuDNN" in saved["fused_error"] and saved["attention_fallback"]
    cell = gpu_check.render_markdown({"stages": {"update_1p5b": {"number": 5, "title": "t", "status": "ok",
                                                                 "seconds": 1.0, "error": None, "results": saved}}})
    assert "fused failed to compile" in cell and "cuDNN \\| not" in cell
    rec.update(attention="fused")
    with pytest.raises(RuntimeError):  # asked for fused explicitly: no silent fallback
        gpu_check._compile_or_fall_back(rec, argparse.Namespace(attention="fused"), graphdef, params, compile_for)
