"""Sampler throughput on the CPU comparison workload (/work/shared/BENCHMARK-WORKLOAD.md): the JAX
engine, Hugging Face `generate` and vLLM's CPU build, one after the other in one run, on the same
39.6M-parameter Qwen2 (vocab 151,680), the same prompt batches in the same order.

Per step: 8 prompts x 4 samples = 32 completions, forced to full length (min_new_tokens = L),
temperature 0.7, top_p 1, no top-k. Reported: median seconds per step over the timed steps (after
warm-up steps, which include compilation) and completion tokens per second; ratios against HF.

    python scripts/bench_sampler.py [--length 128] [--engines jax,hf,vllm]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads slow JAX 4x
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b"
TRAIN = ROOT / "jgrpo/assets/train/deepscaler_math.jsonl"
PROMPTS_PER_STEP, SAMPLES, TEMPERATURE, MAX_PROMPT = 8, 4, 0.7, 256


def make_model(folder: Path) -> None:
    """The workload's model: random init under torch.manual_seed(0), fp32, with the real tokenizer."""
    if (folder / "model.safetensors").is_file():
        return
    tokenizer = transformers.AutoTokenizer.from_pretrained(TOKENIZER)
    config = transformers.Qwen2Config(
        hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=-(-len(tokenizer) // 64) * 64, tie_word_embeddings=False, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def prompt_batches(tokenizer, steps: int) -> list[list[list[int]]]:
    rows = [json.loads(line)["problem"] for line in TRAIN.open()][: steps * PROMPTS_PER_STEP]
    ids = [tokenizer(p)["input_ids"][-MAX_PROMPT:] for p in rows]  # the tokenizer prepends BOS
    return [ids[i:i + PROMPTS_PER_STEP] for i in range(0, len(ids), PROMPTS_PER_STEP)]


def hf_step(model, tokenizer, length):
    def run(prompts):
        repeated = [p for p in prompts for _ in range(SAMPLES)]
        width = max(map(len, repeated))
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in repeated])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in repeated])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=mask, do_sample=True, temperature=TEMPERATURE, top_p=1.0,
                                 top_k=0, max_new_tokens=length, min_new_tokens=length, pad_token_id=pad)
        return (out.shape[1] - width) * len(repeated)
    return run


def engine_step(engine, length):
    from jgrpo.sampling import SamplingParams

    params = SamplingParams(n=SAMPLES, temperature=TEMPERATURE, max_new_tokens=length, min_new_tokens=length)

    def run(prompts):
        return sum(len(c.token_ids) for c in engine.generate(prompts, params))
    return run


def measure(name, step, batches, warmup):
    times, tokens = [], 0
    for i, prompts in enumerate(batches):
        start = time.perf_counter()
        count = step(prompts)
        elapsed = time.perf_counter() - start
        print(f"  {name} step {i}: {elapsed:.2f} s, {count} tokens{' (warm-up)' if i < warmup else ''}", flush=True)
        if i >= warmup:
            times.append(elapsed)
            tokens = count
    median = statistics.median(times)
    return {"seconds_per_step": median, "tokens_per_second": tokens / median}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--engines", default="jax,hf,vllm")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/jgrpo-bench-sampler-model"))
    args = parser.parse_args()

    make_model(args.model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_dir)
    batches = prompt_batches(tokenizer, args.warmup + args.steps)
    eos = [tokenizer.eos_token_id]
    results = {}
    for name in args.engines.split(","):
        print(f"{name}:", flush=True)
        if name == "jax":
            from jgrpo.sampling import JaxEngine
            from ports.hf_load import load_hf_model

            step = engine_step(JaxEngine(load_hf_model(args.model_dir), eos_token_ids=eos, tokenizer=tokenizer),
                               args.length)
        elif name == "hf":
            model = transformers.Qwen2ForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
            step = hf_step(model, tokenizer, args.length)
        elif name == "vllm":
            from jgrpo.sampling.vllm_engine import VllmEngine

            engine = VllmEngine(args.model_dir, eos_token_ids=eos, tokenizer=tokenizer, dtype="float32",
                                enforce_eager=True, max_model_len=MAX_PROMPT + args.length)
            step = engine_step(engine, args.length)
        else:
            raise SystemExit(f"unknown engine {name!r}")
        results[name] = measure(name, step, batches, args.warmup)

    print(f"\nL={args.length}, batch {PROMPTS_PER_STEP}x{SAMPLES}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs")
    for name, r in results.items():
        ratio = f"  {r['tokens_per_second'] / results['hf']['tokens_per_second']:.2f}x HF" if "hf" in results else ""
        print(f"{name:5s} {r['seconds_per_step']:7.2f} s/step {r['tokens_per_second']:8.1f} tokens/s{ratio}")
    print(json.dumps({"length": args.length, **results}))


if __name__ == "__main__":
    main()
