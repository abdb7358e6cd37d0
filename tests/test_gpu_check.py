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
                        "max_abs_output", "fused_speedup", "padded.logits_rms", "padded.grad_norm_max",
                        "padded.real_tokens", "padded.control.logits_max_abs_diff_over_rms",
                        "padded.control.grads_worst_param_rel_l2",
                        "padded.noise_floor.einsum_bf16_vs_fp32.logits_max_abs_diff_over_rms"],
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
    pad = r["attention_layer"]["padded"]
    assert pad["passed"] is True and "error" not in pad
    assert (pad["param_dtype"], pad["compute_dtype"], pad["remat"], pad["fused_backend"]) == (
        "float32", "bfloat16", True, "xla")  # the CPU has no cuDNN: XLA's kernel, the same code path
    assert [0, 0] in pad["rows"] and len(pad["rows"]) == pad["batch"]  # a row of padding only
    assert any(p < pad["prompt_width"] and 0 < c < pad["completion_width"] for p, c in pad["rows"])  # both paddings
    tol = pad["tolerances"]
    assert tol == {"logits_max_abs_diff_over_rms": 0.25, "grads_worst_param_rel_l2": 0.125, "grad_norm_floor": 1e-2}
    d = pad["fused_vs_einsum"]
    assert d["logits_ok"] and 0 <= d["logits_max_abs_diff_over_rms"] <= tol["logits_max_abs_diff_over_rms"]
    assert d["grads_ok"] and 0 <= d["grads_worst_param_rel_l2"] <= tol["grads_worst_param_rel_l2"]
    assert d["logits_max_abs_diff"] == pytest.approx(d["logits_max_abs_diff_over_rms"] * pad["logits_rms"], rel=1e-4)
    assert all(math.isfinite(v) for v in (d["grads_global_rel_l2"], d["loss_einsum"], d["loss_fused"]))
    assert set(d["grads_per_param"]) >= {"embed_tokens", "lm_head", "layers.0.self_attn.q_proj.kernel"}
    assert pad["finite"] and all(v is True for v in pad["finite"].values()), pad["finite"]
    assert {"fused_grads_loss_over_all_positions", "fused_logits_all_positions"} <= set(pad["finite"])
    control = pad["control"]  # padding attended: must fall outside both tolerances, by a wide margin
    assert control["discriminating"] is True
    assert control["logits_max_abs_diff_over_rms"] > 4 * tol["logits_max_abs_diff_over_rms"]
    assert control["grads_worst_param_rel_l2"] > 2 * tol["grads_worst_param_rel_l2"]
    for run in ("einsum_bf16_vs_fp32", "fused_bf16_vs_fp32"):  # bf16 rounding: > 0, well inside the tolerances
        floor = pad["noise_floor"][run]
        assert 0 < floor["logits_max_abs_diff_over_rms"] < tol["logits_max_abs_diff_over_rms"], (run, floor)
        assert 0 < floor["grads_worst_param_rel_l2"] < tol["grads_worst_param_rel_l2"], (run, floor)
    assert r["reference_logprobs"]["logps_finite"]
    s = r["jax_sampler"]
    assert s["completions"] == s["completions_expected"] == 72 and s["tokens"] == 72 * s["new_tokens"]


def test_smoke_markdown_names_every_stage(smoke):
    _, report, out = smoke
    text = (out / "gpu_check.md").read_text()
    assert text.startswith("## GPU check") and "Smoke run" in text and "All 8 stages succeeded." in text
    for entry in report["stages"].values():
        assert f"| {entry['number']} | {entry['title']} | ok |" in text
    assert "padded rows, fused (xla) vs einsum, bf16: passed" in text
    assert "Padded rows, fused attention (xla) vs einsum" in text and "**Passed.**" in text
    assert "| logits: max abs diff at real positions / their RMS" in text and "| 0.25 |" in text


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


def test_padded_rows_batch_layout():
    """[left pad | prompt | completion | right pad] rows; loss weights on real positions whose next token
    is real; the GPU and smoke rows cover full, left-only, right-only, both, and padding-only rows."""
    import numpy as np

    gpu_check = load_gpu_check()
    rows = [(3, 4), (5, 6), (0, 0), (1, 0)]
    ids, mask, weights = gpu_check._padded_rows_batch(rows, 5, 6, vocab=50)
    assert ids.shape == mask.shape == weights.shape == (4, 11) and ids.dtype == mask.dtype == np.int32
    assert mask[0].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0] and mask[1].all() and not mask[2].any()
    assert mask[3].tolist() == [0, 0, 0, 0, 1] + [0] * 6
    assert ((ids > 0) == (mask > 0)).all()
    assert (weights[0] > 0).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert (weights[1, :-1] > 0).all() and weights[1, -1] == 0 and not weights[2:].any()
    assert ((weights == 0) | ((weights >= 0.5) & (weights <= 1.5))).all()
    for rows, (p_width, c_width) in ((gpu_check.PADDED_ROWS, (128, 384)), (gpu_check.PADDED_ROWS_SMOKE, (8, 12))):
        assert (0, 0) in rows and (p_width, c_width) in rows
        assert any(0 < p < p_width and c == c_width for p, c in rows)  # left padding only
        assert any(p == p_width and 0 < c < c_width for p, c in rows)  # right padding only
        assert any(0 < p < p_width and 0 < c < c_width for p, c in rows)  # both
        assert all(0 <= p <= p_width and 0 <= c <= c_width for p, c in rows)
    sizes = gpu_check.sizes(False)["padded"]
    assert (sizes["prompt"], sizes["completion"], sizes["rows"]) == (128, 384, gpu_check.PADDED_ROWS)


def test_markdown_reports_a_failed_padded_check():
    gpu_check = load_gpu_check()
    results = {"padded": {"passed": False, "error": "XlaRuntimeError: cuDNN | refused"}}
    text = gpu_check.render_markdown({"stages": {"attention_layer": {"number": 6, "title": "t", "status": "failed",
                                                                     "seconds": 1.0, "error": "x", "results": results}}})
    assert "padded rows **FAILED** (XlaRuntimeError: cuDNN \\| refused)" in text
    assert "Padded rows, fused vs einsum: **FAILED**: XlaRuntimeError" in text
