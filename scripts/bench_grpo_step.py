"""The full GRPO step on the CPU comparison workload (/work/shared/BENCHMARK-WORKLOAD.md): jgrpo
(the Trainer, JAX sampler) against TRL's GRPOTrainer 1.16.0 (Hugging Face generate, run in its own
environment, .venv-trl, which this script creates when it is missing), and jgrpo with vLLM's CPU
build as the rollout engine; then, with the same trainer, the components against their PyTorch
counterparts: sampler vs HF generate, reference log-prob pass vs HF forward + log_softmax, update
vs a plain torch update. Every side runs over the same prompt batches in the same order, one after
the other, each in its own process; 2 warm-up steps (compilation), then the median of 5.

    python scripts/bench_grpo_step.py [--lengths 128,256] [--sides jgrpo,vllm,trl]

Results accumulate in runs/bench/grpo_step.json (a run over some lengths or sides keeps the
others) and are written to BENCHMARKS.md.
"""

from __future__ import annotations

import bench_common as bc  # first: bench_sampler sets the OpenMP/vLLM environment before torch loads

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = "grpo_step"
LENGTHS, SIDES = (128, 256), ("jgrpo", "vllm", "trl")  # the workload's completion lengths
TRL_ENV = bc.ROOT / ".venv-trl"
TRL_PACKAGES = ["trl==1.16.0", "torch==2.13.0", "accelerate", "datasets"]  # torch pinned: the local CPU wheel
SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(1, str(bc.ROOT))  # the torch reference loss lives in tests/test_grpo_reference.py


# --- jgrpo: the library's Trainer on the workload ------------------------------------------------
class ForcedLength:
    """The workload forces every completion to full length (EOS suppressed); the Trainer samples with
    the config's settings, so this engine wrapper raises min_new_tokens to max_new_tokens."""

    def __init__(self, engine):
        self.engine = engine

    def generate(self, prompts, params):
        return self.engine.generate(prompts, dataclasses.replace(params, min_new_tokens=params.max_new_tokens))

    def sync_weights(self, model):
        return self.engine.sync_weights(model)


def workload_prompts(tokenizer, steps: int):
    """The workload's prompts as jgrpo Prompts: plain problem text (no chat template), the
    tokenizer's BOS, left-truncated to 256 tokens, in file order."""
    from jgrpo.data import Example, Prompt

    rows = [json.loads(line) for line in bc.TRAIN.open()][: steps * bc.PROMPTS_PER_STEP]
    ids = [p for batch in bc.prompt_batches(tokenizer, steps) for p in batch]
    return [Prompt(Example(str(i), r["problem"], str(r.get("answer", ""))), r["problem"], tuple(p))
            for i, (r, p) in enumerate(zip(rows, ids))]


def file_order_batcher(prompts, group: int):
    """A PromptBatcher that walks the prompts in file order instead of a seeded permutation."""
    from jgrpo.data import PromptBatcher

    class FileOrder(PromptBatcher):
        def _permutation(self, epoch):
            return np.arange(len(self.prompts))

    return FileOrder(prompts, bc.PROMPTS_PER_STEP, group, seed=0, max_prompt_length=bc.MAX_PROMPT)


def jgrpo_trainer(engine: str, length: int, group: int, steps: int, micro_batch: int, chunk: int, out_dir: Path):
    """A Trainer configured for the workload (fp32, no remat, one optimizer step per generation,
    `micro_batch` completions per gradient-accumulation step) on the file-order prompts."""
    from jgrpo.config import load_config
    from jgrpo.train import Trainer

    data = out_dir / "prompts.jsonl"  # the Trainer checks its dataset; the batcher below replaces it
    data.write_text("".join(line for _, line in zip(range(bc.PROMPTS_PER_STEP), bc.TRAIN.open())))
    cfg = load_config(None, {
        "model.path": str(bc.MODEL_DIR),
        "data.source": str(data), "data.system_prompt": None, "data.max_prompt_length": bc.MAX_PROMPT,
        "rollout.engine": engine, "rollout.num_generations": group, "rollout.temperature": bc.TEMPERATURE,
        "rollout.max_completion_length": length, "rollout.max_model_len": bc.MAX_PROMPT + length,
        "rollout.enforce_eager": True, "rollout.sync_folder": str(out_dir / "vllm-weights"),
        "rewards.funcs": ["bench_common:length_reward"], "rewards.weights": [1.0],
        "loss.loss_type": bc.LOSS, "loss.beta": bc.BETA, "loss.temperature": bc.TEMPERATURE,
        "loss.micro_batch_size": micro_batch, "loss.logprob_chunk_size": chunk,
        "optim.learning_rate": bc.LEARNING_RATE, "optim.schedule": "constant", "optim.warmup_ratio": 0.0,
        "train.output_dir": str(out_dir / "run"), "train.max_steps": steps,
        "train.prompts_per_step": bc.PROMPTS_PER_STEP, "train.seed": 0, "train.export_hf": "none",
        "log.tensorboard": False, "log.plots": False, "log.completions_per_step": 1,
    })
    trainer = Trainer(cfg, resume=False)
    trainer.batcher = file_order_batcher(workload_prompts(trainer.tokenizer, steps), group)
    trainer.engine = ForcedLength(trainer.engine)
    return trainer


def run_trainer(trainer, steps: int, warmup: int, label: str) -> dict:
    """Runs `steps` Trainer steps; the summary of those after `warmup` with the Trainer's timing/* parts."""
    seconds, parts, tokens = [], {}, 0
    for step in range(steps):
        metrics = trainer.train_step(step)
        seconds.append(metrics["timing/step"])
        for key, value in metrics.items():
            if key.startswith("timing/") and key != "timing/step":
                parts.setdefault(key.removeprefix("timing/"), []).append(value)
        tokens = round(metrics["completions/mean_length"] * bc.PROMPTS_PER_STEP * trainer.cfg.rollout.num_generations)
        print(f"  {label} step {step}: {seconds[-1]:.2f} s "
              + " ".join(f"{k} {v[-1]:.2f}" for k, v in parts.items())
              + (" (warm-up)" if step < warmup else ""), flush=True)
    return bc.summarize(seconds, tokens, warmup, **parts)


# --- the components against PyTorch --------------------------------------------------------------
def torch_batch(batch, start: int, stop: int) -> dict:
    """Rows [start, stop) of a RolloutBatch as torch tensors, without the columns of left padding
    that jgrpo's power-of-two bucketing adds (torch pads to the longest prompt, as TRL does)."""
    import torch

    keep = np.asarray(batch.prompt_mask).any(0)
    rows = {k: np.asarray(getattr(batch, k))[start:stop] for k in
            ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "ref_logps")}
    rows["prompt_ids"], rows["prompt_mask"] = rows["prompt_ids"][:, keep], rows["prompt_mask"][:, keep]
    return {k: torch.from_numpy(np.array(v)) for k, v in rows.items()}  # a writable copy


def torch_logprobs(hf, b: dict, temperature: float, with_entropy: bool = False):
    """HF forward over prompt + completion keeping only the completion's logits, log_softmax, gather."""
    import torch

    ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1).long()
    mask = torch.cat([b["prompt_mask"], b["completion_mask"]], 1).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    c = b["completion_ids"].shape[1]
    logits = hf(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=c + 1).logits[:, :-1]
    logp = torch.log_softmax(logits.float() / temperature, -1)
    token_logp = logp.gather(-1, b["completion_ids"].long()[..., None])[..., 0]
    if not with_entropy:
        return token_logp, None
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
    return token_logp, entropy


class TorchUpdate:
    """The update as TRL + the HF Trainer do it, micro-batched like jgrpo's: loss and backward per
    micro-batch (the loss terms of tests/test_grpo_reference.py), clip_grad_norm_, AdamW."""

    def __init__(self, hf, loss_cfg):
        import torch

        self.hf, self.cfg = hf.train(), loss_cfg
        self.opt = torch.optim.AdamW(hf.parameters(), lr=bc.LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=0.0)

    def step(self, batch) -> None:
        import torch
        from tests import test_grpo_reference as ref

        size, micro = batch.size, self.cfg.micro_batch_size
        self.opt.zero_grad()
        for start in range(0, size, micro):
            b = torch_batch(batch, start, start + micro)
            logp, _ = torch_logprobs(self.hf, b, self.cfg.temperature, with_entropy=True)
            loss = ref.aggregate(ref.token_loss(logp, b["advantages"], beta=self.cfg.beta, ref=b["ref_logps"]),
                                 b["completion_mask"].float(), "bnpo", group_size=self.cfg.group_size)
            (loss * micro / size).backward()  # mean over all groups of the batch
        torch.nn.utils.clip_grad_norm_(self.hf.parameters(), 1.0)
        self.opt.step()


def timed(name: str, fn, inputs: list, warmup: int, tokens: int) -> dict:
    seconds = []
    for i, x in enumerate(inputs):
        start = time.perf_counter()
        fn(x)
        seconds.append(time.perf_counter() - start)
        print(f"  {name} {i}: {seconds[-1]:.2f} s{' (warm-up)' if i < warmup else ''}", flush=True)
    return bc.summarize(seconds, tokens, warmup)


def components(trainer, length: int, warmup: int, steps: int) -> dict:
    """Each part of jgrpo's step against its PyTorch counterpart, over the workload's batches."""
    import jax
    import torch
    import transformers

    from bench_sampler import hf_step, measure
    from jgrpo.sampling import SamplingParams

    group = trainer.cfg.rollout.num_generations
    batcher = file_order_batcher(trainer.batcher.prompts, group)
    prompt_batches = [batcher.next_batch() for _ in range(steps)]
    prompt_ids = [[list(p.token_ids) for p in pb.prompts] for pb in prompt_batches]
    params = SamplingParams(n=group, temperature=bc.TEMPERATURE, max_new_tokens=length, min_new_tokens=length)
    sampled = []

    def jax_sample(prompts):
        sampled.append(trainer.engine.engine.generate(prompts, params))
        return sum(len(c.token_ids) for c in sampled[-1])

    hf = transformers.Qwen2ForCausalLM.from_pretrained(bc.MODEL_DIR, dtype=torch.float32).eval()
    out = {"sampler_jax": measure("jax sampler", jax_sample, prompt_ids, warmup),
           "sampler_hf": measure("hf generate", hf_step(hf, trainer.tokenizer, length), prompt_ids, warmup)}

    # The Trainer's own batch layout, with the Trainer's rewards and advantages.
    batches = [trainer._rollout_batch(pb, c, bc.length_reward([x.text for x in c]))
               for pb, c in zip(prompt_batches, sampled)]
    ids = lambda b: (b.prompt_ids, b.prompt_mask, b.completion_ids, b.completion_mask)
    tokens = batches[0].size * length
    out["logprobs_jgrpo"] = timed("jgrpo reference log-probs",
                                  lambda b: jax.block_until_ready(trainer.logprob_fn(trainer.ref_params, *ids(b))),
                                  batches, warmup, tokens)
    batches = [b.replace(ref_logps=trainer.logprob_fn(trainer.ref_params, *ids(b))) for b in batches]
    micro = trainer.cfg.loss.micro_batch_size

    def torch_reference(batch):
        with torch.no_grad():
            for start in range(0, batch.size, micro):
                torch_logprobs(hf, torch_batch(batch, start, start + micro), trainer.cfg.loss.temperature)

    out["logprobs_torch"] = timed("torch reference log-probs", torch_reference, batches, warmup, tokens)

    def jgrpo_update(batch):
        trainer.state, metrics = trainer.step_fn(trainer.state, batch)
        jax.device_get(metrics)

    out["update_jgrpo"] = timed("jgrpo update", jgrpo_update, batches, warmup, tokens)
    out["update_torch"] = timed("torch update", TorchUpdate(hf, trainer.cfg.loss).step, batches, warmup, tokens)
    return out


# --- the sides, each in its own process ----------------------------------------------------------
def save_side(length: int, side: str, result: dict) -> None:
    key = f"L{length}"
    bc.save_result(RESULTS, key, {**bc.load_results(RESULTS).get(key, {}), side: result})


def run_side(side: str, length: int, args) -> None:
    """One jgrpo side; its full-step result is saved before the components run, so it survives them."""
    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="jgrpo-bench-") as tmp:
        trainer = jgrpo_trainer("vllm" if side == "vllm" else "jax", length, bc.GROUP, steps, args.micro_batch,
                                args.chunk, Path(tmp))
        result = run_trainer(trainer, steps, args.warmup, side)
        result["settings"] = {"micro_batch_size": args.micro_batch, "logprob_chunk_size": args.chunk}
        save_side(length, side, result)
        if side == "jgrpo" and str(length) in args.components_at.split(","):
            save_side(length, side, {**result, "components": components(trainer, length, args.warmup, steps)})
        trainer.logger.close()
        trainer.reward_fn.close()


def ensure_trl_env() -> Path:
    """.venv-trl with TRL 1.16.0, created on first use; transformers pinned to the project's version so
    both sides run the same Hugging Face code."""
    import transformers

    python = TRL_ENV / "bin" / "python"
    ready = python.is_file() and subprocess.run([python, "-c", "import trl, datasets, accelerate"],
                                                capture_output=True).returncode == 0
    if not ready:
        print(f"creating {TRL_ENV} (TRL 1.16.0, CPU torch 2.13.0) ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(TRL_ENV)], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *TRL_PACKAGES,
                        f"transformers=={transformers.__version__}"], check=True)
    return python


def run_trl(length: int, args) -> dict:
    python = ensure_trl_env()
    command = [python, str(SCRIPTS / "trl_grpo_driver.py"), "--length", str(length), "--warmup", str(args.warmup),
               "--steps", str(args.steps)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=bc.ROOT) as proc:
        lines = []
        for line in proc.stdout:  # passed through as it comes: a TRL step takes minutes
            print(line, end="", flush=True)
            lines.append(line)
    if proc.returncode:
        raise SystemExit(f"the TRL driver failed (exit {proc.returncode})")
    raw = json.loads(lines[-1])
    update = [t - g - s for t, g, s in zip(raw["trl_steps"], raw["trl_generate"], raw["trl_score"])]
    return {**bc.summarize(raw["trl_steps"], raw["tokens_per_step"], args.warmup, generate=raw["trl_generate"],
                           **{"reward+reference": raw["trl_score"]}, update=update),
            "torch_threads": raw["torch_threads"]}


# --- report ----------------------------------------------------------------------------------
def fmt_parts(result: dict) -> str:
    """Each part's median in seconds and its share of the median step (parts skip < 0.05 s)."""
    step = result["seconds_per_step"]
    return ", ".join(f"{k} {v:.1f} ({100 * v / step:.0f}%)" for k, v in result["parts"].items() if v >= 0.05)


def step_range(result: dict) -> str:
    timed = result["steps"][result["warmup"]:]
    return f"{min(timed):.1f}-{max(timed):.1f}"


def report(results: dict) -> str:
    lines = ["## Full GRPO step: jgrpo vs TRL GRPOTrainer (CPU)", "",
             "`python scripts/bench_grpo_step.py` (TRL in `.venv-trl`, created by the script). Workload: "
             "/work/shared/BENCHMARK-WORKLOAD.md: a 39.6M-parameter Qwen2 (vocab 151,680), 8 prompts x 4 "
             "completions per step forced to L tokens, beta 0.04 (reference forward), bnpo, lr 1e-6, one "
             "optimizer step per generation, fp32. Median of the 5 steps after 2 warm-up steps (range: fastest "
             "and slowest of those 5); parts are medians too. jgrpo: the library's Trainer, 8 completions per "
             "micro-batch, LM head in chunks of 128 positions. TRL: per-device batch 32, no gradient "
             "checkpointing; on a CPU its fused LM head scores every position, prompt included (it keeps "
             "only completion positions on Triton devices), while jgrpo's never computes prompt logits.",
             f"Machine: {bc.machine()}.", ""]
    for key in sorted(results, key=lambda k: int(k[1:])):
        r = results[key]
        lines += [f"### L = {key[1:]}", ""]
        rows = []
        for side, label in (("jgrpo", "jgrpo (JAX sampler)"), ("vllm", "jgrpo (vLLM CPU engine)"),
                            ("trl", "TRL 1.16.0 GRPOTrainer (HF generate)")):
            if side in r:
                s = r[side]
                speedup = f"**{r['trl']['seconds_per_step'] / s['seconds_per_step']:.2f}x**" if "trl" in r else "-"
                rows.append([label, f"{s['seconds_per_step']:.1f}", step_range(s), f"{s['tokens_per_second']:.0f}",
                             speedup, fmt_parts(s)])
        lines += [bc.markdown_table(["side", "s/step", "range", "completion tokens/s", "speed-up vs TRL",
                                     "parts: s (share of the step)"], rows), ""]
        if "components" in r.get("jgrpo", {}):
            c = r["jgrpo"]["components"]
            rows = [[name, f"{c[a]['seconds_per_step']:.2f}", f"{c[b]['seconds_per_step']:.2f}",
                     f"{c[b]['seconds_per_step'] / c[a]['seconds_per_step']:.2f}x"]
                    for name, a, b in (("sampler (batch 32) vs HF generate", "sampler_jax", "sampler_hf"),
                                       ("reference log-prob pass vs HF forward + log_softmax (completion logits "
                                        "only)", "logprobs_jgrpo", "logprobs_torch"),
                                       ("update (fwd + bwd + AdamW) vs plain torch (micro-batches of 8)",
                                        "update_jgrpo", "update_torch"))]
            lines += ["Components, same run, same batches (jgrpo's programs already compiled by the steps above):",
                      "", bc.markdown_table(["component", "jgrpo s", "torch s", "jgrpo speed-up"], rows), ""]
    missing = [f"L={length} {side}" for length in LENGTHS for side in SIDES
               if side not in results.get(f"L{length}", {})]
    if missing:
        lines += [f"Not measured yet: {', '.join(missing)} (`python scripts/bench_grpo_step.py --lengths L "
                  "--sides ...` adds them; a TRL step takes minutes here).", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--micro-batch", type=int, default=8, help="completions per gradient-accumulation step")
    parser.add_argument("--chunk", type=int, default=128, help="completion positions per LM-head chunk")
    parser.add_argument("--components-at", default="128",
                        help="lengths at which to time the components too ('' for none): they double jgrpo's time")
    parser.add_argument("--report-only", action="store_true", help="rewrite BENCHMARKS.md from the saved results")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side of one length here
    args = parser.parse_args()

    if args.report_only:
        bc.write_section("bench_grpo_step", report(bc.load_results(RESULTS)))
        print(report(bc.load_results(RESULTS)))
        return
    bc.make_model(bc.MODEL_DIR)
    if args.side == "trl":
        save_side(int(args.lengths), "trl", run_trl(int(args.lengths), args))
        return
    if args.side:
        run_side(args.side, int(args.lengths), args)
        return
    for length in map(int, args.lengths.split(",")):
        for side in args.sides.split(","):
            print(f"== {side}, L={length}", flush=True)
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--side", side, "--lengths", str(length)],
                           check=True)
            results = bc.load_results(RESULTS)
            bc.write_section("bench_grpo_step", report(results))
    print(report(bc.load_results(RESULTS)))


if __name__ == "__main__":
    main()
