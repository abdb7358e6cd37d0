"""The 4x A40 budget of the real open-rs run: DeepSeek-R1-Distill-Qwen-1.5B, 12 prompts x 6 = 72
completions of up to 512 prompt + 3584 completion tokens per step, 500 steps; 3 training devices
(fsdp mesh) and vLLM on the fourth.

- Trainer and reference memory per training device: the compiled programs' memory analysis, from
  scripts/update_memory.py (run as is, in its own process: it fakes 3 CPU devices).
- vLLM's share of the fourth device: bf16 weights, and the KV cache that gpu_memory_utilization 0.7
  leaves; how many 4608-token sequences fit.
- Hours for 500 steps from counted FLOPs and bytes at stated efficiencies, next to the paper's 24 h.

No A40 was used: every number here is computed, not measured on the card.

    python scripts/bench_budget.py [--no-compile] [--train-mfu 0.4] [--bandwidth-efficiency 0.7]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import bench_common as bc

CONFIG = bc.ROOT / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b/config.json"
A40 = {"bytes": 48e9, "bf16_flops": 149.7e12, "bandwidth": 696e9}  # dense bf16 tensor core; GDDR6
PAPER_HOURS = 24
STEPS, PROMPTS, GROUP, PROMPT, COMPLETION = 500, 12, 6, 512, 3584
TRAIN_DEVICES, ACCUMULATION = 3, 4
MAX_MODEL_LEN = 4608  # open-rs's vLLM max_model_len
GB = 1e9


def model_counts(cfg: dict) -> dict:
    """Parameter counts and the per-token sizes the budget needs, from a HF Qwen2 config."""
    h, layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    head_dim = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * head_dim
    per_layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * cfg["intermediate_size"] + 2 * h
    body = layers * per_layer + h  # + the final norm
    embedding = vocab * h
    head = 0 if cfg.get("tie_word_embeddings") else vocab * h
    return {"params": body + embedding + head, "body": body, "head": vocab * h, "layers": layers,
            "kv_heads": cfg["num_key_value_heads"], "head_dim": head_dim,
            "attention_width": h,  # heads x head_dim: the width of QK^T and AV per token
            "kv_bytes_per_token": 2 * layers * kv * 2,  # K and V, bf16
            "weights_bf16": 2 * (body + embedding + head)}


def vllm_share(m: dict, utilization: float, reserve: float, max_len: int) -> dict:
    """The fourth device: vLLM takes `utilization` of it for weights, activations (`reserve`, what its
    profiling run finds at the default 8192 batched tokens, plus CUDA graphs) and the KV cache."""
    kv = utilization * A40["bytes"] - m["weights_bf16"] - reserve
    step_kv = PROMPTS * GROUP * max_len * m["kv_bytes_per_token"]
    return {"budget": utilization * A40["bytes"], "weights": m["weights_bf16"], "reserve": reserve, "kv_cache": kv,
            "kv_bytes_per_token": m["kv_bytes_per_token"], "kv_tokens": kv / m["kv_bytes_per_token"],
            "sequences": int(kv // (max_len * m["kv_bytes_per_token"])), "one_step_kv": step_kv}


def forward_flops(m: dict, prompt: int, completion: int) -> float:
    """One sequence's forward: 2 x params per token through the body, the LM head on completion
    positions only (prompt positions need no logits), causal attention 2 x width x layers x S^2."""
    s = prompt + completion
    return 2 * m["body"] * s + 2 * m["head"] * completion + 2 * m["attention_width"] * m["layers"] * s * s


def step_flops(m: dict) -> dict:
    """Per optimizer step. Generation is one forward's worth per sequence (prefill + decode); the
    reference one forward; the policy forward + backward (2x) + the remat forward = 4 forwards."""
    seqs, fwd = PROMPTS * GROUP, forward_flops(m, PROMPT, COMPLETION)
    return {"generation": seqs * fwd, "reference": seqs * fwd, "policy": 4 * seqs * fwd}


def decode_seconds(m: dict, rounds: int, efficiency: float) -> float:
    """Generation of one step, `rounds` generate calls splitting the 72 sequences: every decode step
    reads the weights once per batch and each sequence's KV cache so far, or is bound by the FLOPs
    (at the same efficiency of the peak), whichever takes longer."""
    seqs = PROMPTS * GROUP // rounds
    seconds = 0.0
    for t in range(COMPLETION):
        read = m["weights_bf16"] + seqs * (PROMPT + t) * m["kv_bytes_per_token"]
        flops = seqs * (2 * (m["body"] + m["head"]) + 4 * m["attention_width"] * m["layers"] * (PROMPT + t))
        seconds += max(read / A40["bandwidth"], flops / A40["bf16_flops"]) / efficiency
    prefill = seqs * forward_flops(m, PROMPT, 0) / (A40["bf16_flops"] * 0.4)
    return rounds * (seconds + prefill)


def memory_analysis() -> dict:
    """scripts/update_memory.py's per-device peak of each phase of the step, for the open-rs layout
    (its defaults), with its whole output."""
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("update_memory.py"))],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True)
    phases = dict(re.findall(r"peak during (.+?)\s+([\d.]+) GB", proc.stdout))
    if not phases:
        raise SystemExit(f"no 'peak during' lines in update_memory.py's output:\n{proc.stdout}")
    return {"phases_gb": {k: float(v) for k, v in phases.items()}, "output": proc.stdout.strip()}


def budget(args) -> dict:
    cfg = json.loads(CONFIG.read_text())
    m = model_counts(cfg)
    flops = step_flops(m)
    train_rate = TRAIN_DEVICES * A40["bf16_flops"] * args.train_mfu
    train_s = (flops["reference"] + flops["policy"]) / train_rate
    layouts = {}
    # jgrpo's Trainer samples the whole step's 72 completions in one call; open-rs's TRL 0.16 generated
    # once per accumulation step, 4 rounds of 18, reading the weights 4 times as often.
    for name, rounds in (("jgrpo: one generate call of 72", 1), ("open-rs TRL 0.16: 4 calls of 18", ACCUMULATION)):
        gen_s = decode_seconds(m, rounds, args.bandwidth_efficiency)
        step_s = gen_s + train_s + args.sync_seconds  # sequential: the trainers wait for the rollout
        layouts[name] = {"generation_s": gen_s, "train_s": train_s, "sync_s": args.sync_seconds,
                         "step_s": step_s, "hours_500": STEPS * step_s / 3600}
    return {"model": m, "vllm": vllm_share(m, 0.7, args.vllm_reserve * GB, MAX_MODEL_LEN),
            "flops_per_step": flops, "assumptions": vars(args), "layouts": layouts}


def report(r: dict) -> str:
    m, v, f, a = r["model"], r["vllm"], r["flops_per_step"], r["assumptions"]
    lines = ["## The 4x A40 budget (open-rs, DeepSeek-R1-Distill-Qwen-1.5B, 500 steps)", "",
             "`python scripts/bench_budget.py`. Computed, not measured: no A40 (and no GPU) was available. "
             f"Model: {m['params'] / 1e9:.3f} B parameters, {m['weights_bf16'] / GB:.2f} GB in bf16. Step: "
             f"{PROMPTS} prompts x {GROUP} = {PROMPTS * GROUP} completions of up to {PROMPT} + {COMPLETION} tokens; "
             f"{TRAIN_DEVICES} training devices (fsdp) + vLLM on the fourth.", ""]
    if "memory" in r:
        phases = r["memory"]["phases_gb"]
        worst = max(phases.values())
        lines += ["### Training devices (3-device mesh): compiled memory analysis", "",
                  "From `python scripts/update_memory.py` (XLA:CPU's buffer assignment of the real programs, "
                  "compiled against abstract inputs: fp32 master weights + AdamW, bf16 compute, remat, 6 "
                  "completions per device per micro-batch x 4 accumulation steps, bf16 reference), plus what "
                  "stays resident on the device during each phase.", "",
                  bc.markdown_table(["phase of the step", "per-device peak (GB)", "of 48 GB"],
                                    [[name, f"{gb:.2f}", f"{100 * gb / 48:.0f}%"] for name, gb in phases.items()]),
                  "", f"Worst phase {worst:.2f} GB per device: it fits an A40 with {48 - worst:.1f} GB to spare.", "",
                  "<details><summary>update_memory.py output</summary>", "", "```", r["memory"]["output"], "```",
                  "", "</details>", ""]
    lines += ["### vLLM on the fourth device", "",
              bc.markdown_table(["", "GB"], [
                  ["gpu_memory_utilization 0.7 x 48 GB", f"{v['budget'] / GB:.2f}"],
                  ["weights (bf16)", f"{v['weights'] / GB:.2f}"],
                  ["activations + CUDA graphs (assumed)", f"{v['reserve'] / GB:.2f}"],
                  ["KV cache", f"{v['kv_cache'] / GB:.2f}"],
                  [f"KV cache of one step's {PROMPTS * GROUP} sequences at {MAX_MODEL_LEN} tokens",
                   f"{v['one_step_kv'] / GB:.2f}"]]), "",
              f"KV bytes per token = 2 (K, V) x {m['layers']} layers x {m['kv_heads']} KV heads x {m['head_dim']} "
              f"head_dim x 2 bytes = {v['kv_bytes_per_token']:,} B; the cache holds {v['kv_tokens'] / 1e6:.2f} M "
              f"tokens = **{v['sequences']} sequences of {MAX_MODEL_LEN} tokens** "
              f"(a step needs {PROMPTS * GROUP}).", ""]
    rows = [[name, f"{x['generation_s']:.0f}", f"{x['train_s']:.0f}", f"{x['sync_s']:.0f}", f"{x['step_s']:.0f}",
             f"{x['hours_500']:.1f}"] for name, x in r["layouts"].items()]
    lines += ["### Hours for 500 steps", "",
              f"FLOPs per step (every completion at its full {COMPLETION} tokens, so an upper bound): generation "
              f"{f['generation'] / 1e15:.2f} PFLOP, reference forward {f['reference'] / 1e15:.2f}, policy "
              f"forward + backward + remat {f['policy'] / 1e15:.2f} (per sequence: 2 x params x tokens through "
              "the body, the LM head on completion tokens only, causal attention 2 x width x layers x S^2 per "
              "forward; backward = 2 forwards, remat = 1).", "",
              f"Assumptions: A40 peak {A40['bf16_flops'] / 1e12:.1f} TFLOPS bf16 (dense tensor core), "
              f"{A40['bandwidth'] / 1e9:.0f} GB/s. Training and reference at **{a['train_mfu']:.0%} MFU** on the 3 "
              f"training devices. Generation is decode-bound: each decode step reads the bf16 weights once per "
              f"batch plus every sequence's KV cache so far, at **{a['bandwidth_efficiency']:.0%} of the "
              f"bandwidth** (or its FLOPs at that share of peak, whichever is slower); prefill at 40% MFU. "
              f"Weight sync {a['sync_seconds']:.0f} s. Rollout and training run one after the other.", "",
              bc.markdown_table(["layout", "generation s", "ref + train s", "sync s", "s/step", "h / 500 steps"],
                                rows), "",
              f"The paper: {PAPER_HOURS} h on 4x A40. Real completions are shorter than {COMPLETION} tokens "
              "on average, so the time scales down roughly with the mean completion length; generating the "
              "72 completions in one call instead of 4 is where jgrpo's layout saves most.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-mfu", type=float, default=0.4)
    parser.add_argument("--bandwidth-efficiency", type=float, default=0.7)
    parser.add_argument("--vllm-reserve", type=float, default=1.5, help="GB for vLLM activations and CUDA graphs")
    parser.add_argument("--sync-seconds", type=float, default=2.0)
    parser.add_argument("--no-compile", action="store_true", help="skip update_memory.py (minutes of compiling)")
    args = parser.parse_args()

    result = budget(argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "no_compile"}))
    if not args.no_compile:
        result["memory"] = memory_analysis()
    elif "memory" in bc.load_results("budget"):
        result["memory"] = bc.load_results("budget")["memory"]  # keep the last compiled analysis
    for key, value in result.items():
        bc.save_result("budget", key, value)
    text = report(result)
    bc.write_section("bench_budget", text)
    print(text)


if __name__ == "__main__":
    main()
