"""Per-device memory of the compiled GRPO update for the real 1.5B model, without allocating it.

open-rs layout (the default): 3 training devices (fsdp), each holding 6 completions of 512 prompt +
3584 completion tokens per micro-batch, 4 micro-batches per optimizer step (72 completions); fp32
master weights with bf16 compute, remat on, AdamW, and a bf16 frozen reference model whose
log-probs come from a separate no-grad jit. Both programs are lowered against abstract inputs
(ShapeDtypeStructs carrying shardings) and compiled; XLA's buffer assignment reports the bytes.

    python scripts/update_memory.py [--devices 3] [--per-device 6] [--micro-batches 4] [--attention einsum]

One GPU (`--one-gpu`): all 72 completions on a 1-device mesh, in micro-batches of each size of
`--micro-sizes` (default 2,4,6), for each kernel of `--attention` (default einsum,fused,flash-estimate),
next to the JAX budget an 80 GB and a 141 GB card leave after vLLM's share (gpu_memory_utilization
for bf16 weights + the KV cache of the 72 x 4096-token rollout + an activation reserve, 5% headroom):

    python scripts/update_memory.py --one-gpu [--micro-sizes 2,4,6] [--attention einsum,fused,flash-estimate]

The 141 GB card gets the recipe's share (rollout.gpu_memory_utilization of conf/open_rs3_1gpu.yaml,
which is for an H200), the 80 GB card the smallest share that holds vLLM's need. Without --one-gpu,
--attention may be a comma list too (one compile per kernel). `--benchmarks` keeps each layout's
result in runs/bench/update_memory.json (runs over parts of the grid add up) and rewrites the
`update_memory` section of BENCHMARKS.md from everything kept there; `--report-only` only rewrites it.

Numbers come from the CPU backend: its fusion and bf16 handling differ from a GPU's (it computes
bf16 matmuls through fp32 copies), so read them as an estimate of the GPU program, not a
measurement of it. XLA:CPU's default concurrency-optimised scheduler runs every rematerialised
forward early and so keeps all layers' activations alive; the memory-minimising scheduler used
here is the one that behaves like a GPU's memory-aware scheduling.

Attention kernels: "einsum" materialises fp32 scores [b, heads, t, t] (what the CPU runs);
"fused" is `jax.nn.dot_product_attention`, which on CPU is XLA's implementation and also
materialises the scores (on a GPU it is cuDNN flash attention, which does not); "flash-estimate"
compiles the fused model with the kernel replaced by an elementwise stand-in of the same inputs
and output (no [t, t] buffer at all), an estimate of the program with cuDNN flash attention, whose
own saved state (output + fp32 log-sum-exp per query and head) is negligible next to the layer.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import math
import os
import re
import shlex
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b/config.json"
A40_BYTES = 48e9
GB = 1e9
ATTENTIONS = ("einsum", "fused", "flash-estimate")

# One GPU: open-rs Exp3's step (12 prompts x 6) and vLLM's share of the card.
CARDS_GB = (80, 141)
PROMPTS, GROUP = 12, 6
VLLM_WEIGHTS_GB = 3.55  # the 1.5B model in bf16 (scripts/bench_budget.py)
VLLM_RESERVE_GB = 1.5  # vLLM activations at 8192 batched tokens + CUDA graphs (bench_budget.py's assumption)
HEADROOM = 0.05  # left free on a shared GPU (jgrpo.devices.DeviceLayout.headroom)
RECIPE_1GPU = Path(__file__).resolve().parents[1] / "conf/open_rs3_1gpu.yaml"
RECIPE_CARD_GB = 141  # the card the recipe's gpu_memory_utilization is for (H200)
JAX_FRACTION_OWN_GPU = 0.9  # JAX's share of a GPU it shares with no vLLM (jgrpo.devices.DeviceLayout)
RESULTS_NAME = "update_memory"  # runs/bench/update_memory.json and BENCHMARKS.md's section


def kv_bytes_per_token(cfg) -> int:
    """K and V, bf16, every layer: 28 x 2 x 2 kv heads x 128 x 2 bytes for the 1.5B model."""
    return cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * 2


def recipe_utilization() -> float | None:
    """rollout.gpu_memory_utilization of conf/open_rs3_1gpu.yaml (None if it is not there)."""
    if not RECIPE_1GPU.is_file():
        return None
    found = re.search(r"^\s*gpu_memory_utilization:\s*([0-9.]+)", RECIPE_1GPU.read_text(), re.M)
    return float(found.group(1)) if found else None


def vllm_plan(cfg, card_gb: float, sequences: int, tokens: int, utilization: float | None = None) -> dict:
    """vLLM's gpu_memory_utilization u on a card of card_gb: bf16 weights + the KV cache of
    `sequences` x `tokens` + the activation reserve, rounded up to 0.01 (or `utilization` where given,
    e.g. the recipe's); JAX gets 1 - u - headroom."""
    kv_gb = sequences * tokens * kv_bytes_per_token(cfg) / GB
    need = VLLM_WEIGHTS_GB + kv_gb + VLLM_RESERVE_GB
    minimum = math.ceil(100 * need / card_gb) / 100
    u = minimum if utilization is None else utilization
    return {"card_gb": card_gb, "kv_cache_gb": kv_gb, "vllm_needs_gb": need, "utilization": u,
            "minimum_utilization": minimum, "source": "computed" if utilization is None else "recipe",
            "jax_fraction": round(1 - u - HEADROOM, 3), "jax_budget_gb": card_gb * (1 - u - HEADROOM)}


def card_plans(cfg, args) -> list[dict]:
    """The 80 GB card at the smallest share that holds vLLM, the 141 GB card at the recipe's."""
    total, tokens = PROMPTS * GROUP, args.prompt + args.completion
    recipe = recipe_utilization()
    return [vllm_plan(cfg, card, total, tokens, recipe if card == RECIPE_CARD_GB else None) for card in CARDS_GB]


def flash_estimate(q, k, v, lengths, compute_dtype):
    """Stand-in for cuDNN flash attention when compiling on CPU: the same inputs and output shape,
    every input in the gradient, no [t, t] intermediate."""
    b, t, h, d = q.shape
    n_kv = k.shape[2]
    cd = compute_dtype
    q = q.astype(cd).reshape(b, t, n_kv, h // n_kv, d)
    out = q * k.astype(cd)[:, :, :, None, :] + v.astype(cd)[:, :, :, None, :]
    return out.reshape(b, t, h * d)


def compile_phases(cfg, args, *, devices: int, per_device: int, micro_batches: int, attention: str,
                   verbose: bool = True) -> dict:
    """Compiles the update and the reference log-prob pass for one layout; returns each phase's
    per-device peak (program peak + what else is resident) and the programs' memory analyses."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import jgrpo.model.qwen2 as qwen2
    from jgrpo.grpo import LossConfig, OptimizerConfig, RolloutBatch, abstract_train_state, make_logprob_fn, \
        make_train_step
    from jgrpo.model import DtypePolicy, Qwen2ForCausalLM, batch_sharding, make_mesh

    mesh = make_mesh(fsdp=devices, devices=jax.devices()[:devices])
    micro = per_device * devices
    batch_size = micro * micro_batches
    # bnpo normalises over groups of 6 (one prompt's completions); a micro-batch of 2 or 4 cannot hold
    # one, so those compile with groups of their own size: the memory does not depend on it.
    group = GROUP if micro % GROUP == 0 else math.gcd(micro, GROUP)
    loss_cfg = LossConfig(beta=0.04, num_generations=GROUP, micro_batch_size=micro, bnpo_group_size=group,
                          logprob_chunk_size=args.chunk)
    opt_cfg = OptimizerConfig()
    model_kwargs = {}
    if "attention" in inspect.signature(Qwen2ForCausalLM.__init__).parameters:
        model_kwargs["attention"] = "fused" if attention == "flash-estimate" else attention
    elif attention != "einsum":
        raise SystemExit(f"--attention {attention}: this Qwen2ForCausalLM has no attention option")
    original = getattr(qwen2, "fused_attention", None)
    if attention == "flash-estimate":
        qwen2.fused_attention = flash_estimate

    def abstract_params(policy):
        with jax.set_mesh(mesh):
            model = nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, policy=policy, remat=not args.no_remat,
                                                            rngs=nnx.Rngs(0), **model_kwargs))
        return nnx.split(model, nnx.Param)

    graphdef, params = abstract_params(DtypePolicy(param_dtype=jnp.float32, compute_dtype=jnp.bfloat16))
    _, ref_params = abstract_params(DtypePolicy(param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16))
    state = abstract_train_state(params, opt_cfg, mesh)
    ref_params = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s.sharding),
                              ref_params, params)

    def rows(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding(mesh, len(shape)))

    P, C = args.prompt, args.completion
    batch = RolloutBatch(
        prompt_ids=rows((batch_size, P), jnp.int32), prompt_mask=rows((batch_size, P), jnp.int32),
        completion_ids=rows((batch_size, C), jnp.int32), completion_mask=rows((batch_size, C), jnp.int32),
        advantages=rows((batch_size,), jnp.float32), rewards=rows((batch_size,), jnp.float32),
        truncated=rows((batch_size,), jnp.bool_), ref_logps=rows((batch_size, C), jnp.float32))

    n_params = sum(x.size for x in jax.tree.leaves(params))
    say = print if verbose else (lambda *a, **k: None)
    say(f"model {CONFIG.parent.name}: {n_params / 1e9:.3f} B parameters, {cfg.num_hidden_layers} layers, "
        f"vocab {cfg.vocab_size}")
    say(f"mesh fsdp={devices}; micro-batch {per_device}/device x {micro_batches} accumulation = "
        f"{batch_size} completions of {P}+{C} tokens; params fp32, compute bf16, remat={not args.no_remat}, "
        f"lm-head chunk {args.chunk}, attention {attention}")

    analyses = {}

    def analyse(name, fn, *inputs):
        started = time.perf_counter()
        stats = fn.lower(*inputs).compile().memory_analysis()
        peak = (stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
                + stats.temp_size_in_bytes)
        say(f"\n{name} (compiled in {time.perf_counter() - started:.0f} s), per device:")
        rows = [("arguments", stats.argument_size_in_bytes), ("outputs", stats.output_size_in_bytes),
                ("aliased (donated)", stats.alias_size_in_bytes), ("temporaries", stats.temp_size_in_bytes),
                ("program peak = args + outputs - aliased + temps", peak)]
        for label, value in rows:
            say(f"  {label:48s} {value / GB:8.2f} GB")
        analyses[name.split(":")[0].split(" (")[0]] = {label: value for label, value in rows}
        analyses[name.split(":")[0].split(" (")[0]]["compile_s"] = time.perf_counter() - started
        return peak

    def per_device_bytes(tree):
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)) / devices

    try:
        step = make_train_step(graphdef, state, loss_cfg, opt_cfg, mesh)
        logprobs = make_logprob_fn(graphdef, ref_params, mesh, micro_batch_size=micro, chunk_size=args.chunk)
        ids = (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask)
        # What else sits on the device while each program runs: the reference weights during the
        # update, the whole train state during the reference pass.
        phases = {
            "update": analyse("update: micro-batch gradients, clip, AdamW (state donated)", step, state, batch)
            + per_device_bytes(ref_params),
            "reference log-probs": analyse("reference log-probs (no grad, bf16 params)", logprobs, ref_params, *ids)
            + per_device_bytes(state),
        }
    finally:
        if original is not None:
            qwen2.fused_attention = original
    resident = {"train_state": per_device_bytes(state), "params": per_device_bytes(state.params),
                "adamw": per_device_bytes(state.opt_state), "reference": per_device_bytes(ref_params)}
    say(f"\nresident per device: train state {resident['train_state'] / GB:.2f} GB (params "
        f"{resident['params'] / GB:.2f}, AdamW {resident['adamw'] / GB:.2f}), reference "
        f"{resident['reference'] / GB:.2f} GB")
    return {"phases": phases, "analyses": analyses, "resident": resident}


def one_gpu(cfg, args) -> None:
    sizes = [int(s) for s in args.micro_sizes.split(",")]
    attentions = args.attention.split(",") if args.attention else list(ATTENTIONS)
    total = PROMPTS * GROUP
    for m in sizes:
        if total % m:
            raise SystemExit(f"--micro-sizes: {m} does not divide the {total} completions of a step")
    tokens = args.prompt + args.completion
    plans = card_plans(cfg, args)
    print(f"One GPU: {PROMPTS} prompts x {GROUP} = {total} completions of {args.prompt}+{args.completion} tokens "
          f"on a 1-device mesh; micro-batch sizes {sizes}; attention {attentions}")
    print(f"vLLM's share: bf16 weights {VLLM_WEIGHTS_GB:.2f} GB + KV cache {total} x {tokens} tokens x "
          f"{kv_bytes_per_token(cfg):,} B/token ({cfg.num_hidden_layers} layers x 2 x {cfg.num_key_value_heads} "
          f"kv heads x {cfg.head_dim} x 2 B) = {plans[0]['kv_cache_gb']:.2f} GB + activations/CUDA graphs "
          f"{VLLM_RESERVE_GB:.1f} GB = {plans[0]['vllm_needs_gb']:.2f} GB")
    for p in plans:
        source = (f" ({RECIPE_1GPU.name}'s; {p['minimum_utilization']:.2f} would hold vLLM's need)"
                  if p["source"] == "recipe" else "")
        print(f"  {p['card_gb']} GB card: gpu_memory_utilization {p['utilization']:.2f}{source} "
              f"({p['utilization'] * p['card_gb']:.2f} GB), headroom {HEADROOM:.0%}, JAX "
              f"XLA_PYTHON_CLIENT_MEM_FRACTION {p['jax_fraction']:.3f} = {p['jax_budget_gb']:.2f} GB")
    results = []
    for attention in attentions:
        for m in sizes:
            print(f"\n=== micro-batch {m}, attention {attention} ===")
            started = time.perf_counter()
            r = compile_phases(cfg, args, devices=1, per_device=m, micro_batches=total // m, attention=attention)
            results.append((m, attention, r))
            if args.benchmarks:
                keep(args, f"one_gpu/{m}/{attention}", r, time.perf_counter() - started, mode="one_gpu",
                     micro_batch=m, attention=attention, plans=plans)
            for phase, value in r["phases"].items():
                print(f"  peak during {phase:24s} {value / GB:8.2f} GB")
    header = ["micro-batch", "attention", "update temps GB", "update peak GB", "reference peak GB", "worst GB"]
    header += [f"fits {p['card_gb']} GB (JAX {p['jax_budget_gb']:.1f} GB)" for p in plans]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for m, attention, r in results:
        worst = max(r["phases"].values()) / GB
        temps = r["analyses"]["update"]["temporaries"] / GB
        cells = [str(m), attention, f"{temps:.2f}", f"{r['phases']['update'] / GB:.2f}",
                 f"{r['phases']['reference log-probs'] / GB:.2f}", f"{worst:.2f}"]
        cells += [("yes" if worst <= p["jax_budget_gb"] else "no") + f" ({p['jax_budget_gb'] - worst:+.1f})"
                  for p in plans]
        print("| " + " | ".join(cells) + " |")
    resident = results[0][2]["resident"]
    print(f"\nresident on the device: train state {resident['train_state'] / GB:.2f} GB (fp32 params "
          f"{resident['params'] / GB:.2f} + AdamW {resident['adamw'] / GB:.2f}), bf16 reference "
          f"{resident['reference'] / GB:.2f} GB; the update's temporaries include the fp32 gradient "
          f"accumulator ({resident['params'] / GB:.2f} GB)")


def _bench_common():
    """scripts/bench_common.py (results under runs/bench/, BENCHMARKS.md's sections); imported late,
    after the compiles: it brings torch in."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_common

    return bench_common


def keep(args, key: str, r: dict, seconds: float, **layout) -> None:
    """One layout's result into runs/bench/update_memory.json, with the command that produced it."""
    bc = _bench_common()
    bc.save_result(RESULTS_NAME, key, {
        **layout, "prompt": args.prompt, "completion": args.completion, "chunk": args.chunk,
        "remat": not args.no_remat, "phases_gb": {k: v / GB for k, v in r["phases"].items()},
        "analyses_gb": {phase: {k: (v if k == "compile_s" else v / GB) for k, v in a.items()}
                        for phase, a in r["analyses"].items()},
        "resident_gb": {k: v / GB for k, v in r["resident"].items()},
        "seconds": round(seconds, 1), "command": "python scripts/update_memory.py " + shlex.join(sys.argv[1:]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": bc.machine()})


def _order(entry: dict) -> tuple:
    a = entry["attention"]
    return (ATTENTIONS.index(a) if a in ATTENTIONS else len(ATTENTIONS), entry.get("micro_batch", 0),
            entry.get("devices", 0))


def _commands(entries: list[dict]) -> tuple[list[str], dict]:
    """The distinct commands, numbered in order of first use: ([command], {command: number})."""
    commands: list[str] = []
    for e in entries:
        if e["command"] not in commands:
            commands.append(e["command"])
    return commands, {c: i + 1 for i, c in enumerate(commands)}


def render_section(results: dict, cfg) -> str:
    """BENCHMARKS.md's section from everything kept in runs/bench/update_memory.json."""
    bc = _bench_common()
    mesh = sorted((e for e in results.values() if e.get("mode") == "mesh"), key=_order)
    single = sorted((e for e in results.values() if e.get("mode") == "one_gpu"), key=_order)
    lines = ["## Memory plans by attention kernel (`python scripts/update_memory.py`)", "",
             "XLA:CPU's buffer assignment of the real programs for DeepSeek-R1-Distill-Qwen-1.5B (compiled "
             "against abstract inputs: fp32 master weights + AdamW, bf16 compute, remat, LM head in chunks of "
             "256, bf16 frozen reference), plus what else stays resident on the device in each phase. "
             "**Estimates, not GPU measurements** (no GPU was lent to this task). XLA:CPU can say how large the "
             "compiled programs' buffers are and which ones live at once under a memory-minimising schedule; "
             "it cannot see XLA:GPU's own buffer assignment and fusion (the CPU backend also computes bf16 "
             "matmuls through fp32 copies), the memory of cuDNN's flash-attention kernel, cuBLAS/cuDNN/NCCL "
             "workspaces, the CUDA context, or the allocator's fragmentation. Attention kernels: `einsum` "
             "materialises fp32 scores [b, heads, t, t]; `fused` is `jax.nn.dot_product_attention`, which on "
             "the CPU is XLA's implementation and still materialises the scores (on a GPU it is cuDNN's flash "
             "attention, which does not); `flash-estimate` compiles the fused model with the kernel replaced by "
             "a stand-in of the same inputs and output and no S x S buffer, an approximation of the program "
             "with cuDNN flash attention (the kernel's own saved output + fp32 log-sum-exp are small next to a "
             "layer).", ""]
    every = [e for e in results.values() if e.get("mode") in ("mesh", "one_gpu")]

    def update_gb(mode, attention):
        return [e["phases_gb"]["update"] for e in every if e["mode"] == mode and e["attention"] == attention]

    if any(f and u and min(f) > max(u) for mode in ("mesh", "one_gpu")
           for f, u in [(update_gb(mode, "flash-estimate"), update_gb(mode, "einsum"))]):
        lines += ["**Read the fused and flash-estimate update rows with care.** The flash-estimate update comes "
                  "out larger than the einsum one although it holds no S x S buffer at all, while its reference "
                  "pass (no backward) shows the expected saving. Under remat JAX saves the same per-layer "
                  "residuals for all three kernels (`jax.ad_checkpoint.print_saved_residuals`), so the extra "
                  "bytes come from how XLA:CPU schedules and assigns buffers for the fused model's backward; "
                  "whether XLA:GPU does the same is exactly what this CPU estimate cannot tell. The einsum rows "
                  "are the plan's basis; the GPU check's stage 5 (below) measures the real update with the "
                  "fused kernel.", ""]
    if mesh:
        commands, number = _commands(mesh)
        e0 = mesh[0]
        lines += [f"### 4x A40: {e0['devices']} trainer GPUs (fsdp), vLLM on the fourth", "",
                  f"{e0['per_device']} completions of {e0['prompt']} + {e0['completion']} tokens per device per "
                  f"micro-batch x {e0['micro_batches']} micro-batches = "
                  f"{e0['per_device'] * e0['devices'] * e0['micro_batches']} completions per step. A trainer GPU "
                  f"shares nothing with vLLM, so JAX may use {JAX_FRACTION_OWN_GPU:.0%} of its 48 GB = "
                  f"{JAX_FRACTION_OWN_GPU * A40_BYTES / GB:.1f} GB (XLA_PYTHON_CLIENT_MEM_FRACTION).", ""]
        rows = []
        for e in mesh:
            up, ref = e["phases_gb"]["update"], e["phases_gb"]["reference log-probs"]
            worst, cap = max(up, ref), JAX_FRACTION_OWN_GPU * A40_BYTES / GB
            layout = (f"{e['devices']} x {e['per_device']} x {e['micro_batches']}"
                      if (e["devices"], e["per_device"], e["micro_batches"]) != (3, 6, 4) else "open-rs")
            rows.append([layout, e["attention"], f"{e['analyses_gb']['update']['temporaries']:.2f}", f"{up:.2f}",
                         f"{100 * up / 48:.0f}%", f"{ref:.2f}", f"{100 * ref / 48:.0f}%",
                         ("yes" if worst <= cap else "no") + f" ({cap - worst:+.1f})", f"[{number[e['command']]}]"])
        lines += [bc.markdown_table(["layout", "attention", "update temporaries GB", "update peak GB", "of 48 GB",
                                     "reference peak GB", "of 48 GB", f"fits {cap:.1f} GB", "from"], rows), ""]
        lines += [f"[{i + 1}] `{c}`" + (" " if i + 1 < len(commands) else "") for i, c in enumerate(commands)]
        lines += [""]
    if single:
        plans = single[0]["plans"]
        commands, number = _commands(single)
        e0 = single[0]
        total, tokens = PROMPTS * GROUP, e0["prompt"] + e0["completion"]
        lines += ["### One GPU: conf/open_rs3_1gpu.yaml", "",
                  f"{PROMPTS} prompts x {GROUP} = {total} completions of {e0['prompt']} + {e0['completion']} tokens "
                  "on a 1-device mesh, JAX and vLLM on the same card. The recipe's micro-batch is 6; 2 and 4 are "
                  f"for reference only: the recipe's bnpo loss normalises over groups of {GROUP} completions "
                  f"(`bnpo_group_size: {GROUP}`), so a micro-batch below {GROUP} would change the loss (these "
                  "compiles give them groups of their own size; the memory does not depend on it).", "",
                  f"vLLM's share: bf16 weights {VLLM_WEIGHTS_GB:.2f} GB + KV cache {total} x {tokens} tokens x "
                  f"{kv_bytes_per_token(cfg):,} B/token = {plans[0]['kv_cache_gb']:.2f} GB + activations/CUDA "
                  f"graphs {VLLM_RESERVE_GB:.1f} GB (assumed) = {plans[0]['vllm_needs_gb']:.2f} GB. JAX gets "
                  f"1 - gpu_memory_utilization - {HEADROOM:.0%} headroom:", ""]
        lines += [bc.markdown_table(
            ["card", "rollout.gpu_memory_utilization", "vLLM GB", "JAX fraction", "JAX budget GB"],
            [[f"{p['card_gb']} GB", f"{p['utilization']:.2f}" + (
                f" (the recipe's; {p['minimum_utilization']:.2f} would hold vLLM's need)" if p["source"] == "recipe"
                else " (the smallest that holds vLLM's need; set it for an 80 GB card)"),
              f"{p['utilization'] * p['card_gb']:.2f}", f"{p['jax_fraction']:.3f}", f"{p['jax_budget_gb']:.2f}"]
             for p in plans]), ""]
        rows = []
        for e in single:
            up, ref = e["phases_gb"]["update"], e["phases_gb"]["reference log-probs"]
            worst = max(up, ref)
            rows.append([str(e["micro_batch"]) + ("" if e["micro_batch"] % GROUP == 0 else " (other loss)"),
                         e["attention"], f"{e['analyses_gb']['update']['temporaries']:.2f}", f"{up:.2f}",
                         f"{ref:.2f}", f"{worst:.2f}"]
                        + [("yes" if worst <= p["jax_budget_gb"] else "no") + f" ({p['jax_budget_gb'] - worst:+.1f})"
                           for p in plans] + [f"[{number[e['command']]}]"])
        lines += [bc.markdown_table(["micro-batch", "attention", "update temporaries GB", "update peak GB",
                                     "reference peak GB", "worst GB"]
                                    + [f"fits {p['card_gb']} GB (JAX {p['jax_budget_gb']:.1f})" for p in plans]
                                    + ["from"], rows), ""]
        lines += [f"[{i + 1}] `{c}`" + (" " if i + 1 < len(commands) else "") for i, c in enumerate(commands)]
        res = e0["resident_gb"]
        lines += ["", f"Resident on the device: train state {res['train_state']:.2f} GB (fp32 params "
                  f"{res['params']:.2f} + AdamW {res['adamw']:.2f}), bf16 reference {res['reference']:.2f} GB; "
                  f"the update's temporaries include the fp32 gradient accumulator ({res['params']:.2f} GB). "
                  "Update peak = the update program's peak + the reference weights; reference peak = the "
                  "reference pass's peak + the train state.", ""]
    every = mesh + single
    if every:
        rows = []
        for e in every:
            where = (f"{e['devices']} devices, {e['per_device']}/device x {e['micro_batches']}" if e["mode"] == "mesh"
                     else f"1 device, micro {e['micro_batch']} x {PROMPTS * GROUP // e['micro_batch']}")
            for phase, a in e["analyses_gb"].items():
                rows.append([where, e["attention"], phase, f"{a['arguments']:.2f}", f"{a['outputs']:.2f}",
                             f"{a['aliased (donated)']:.2f}", f"{a['temporaries']:.2f}",
                             f"{a['program peak = args + outputs - aliased + temps']:.2f}",
                             f"{a.get('compile_s', float('nan')):.0f}"])
        machines = sorted({e["machine"] for e in every})
        dates = sorted(e["date_utc"] for e in every)
        lines += ["<details><summary>each program's memory analysis (GB per device)</summary>", "",
                  bc.markdown_table(["layout", "attention", "program", "arguments", "outputs", "aliased",
                                     "temporaries", "program peak", "compile s"], rows), "",
                  f"Compiled on {'; '.join(machines)} (shared with other jobs), {dates[0]} to {dates[-1]} UTC.", "",
                  "</details>", ""]
    return "\n".join(lines)


def write_benchmarks(cfg) -> None:
    bc = _bench_common()
    text = render_section(bc.load_results(RESULTS_NAME), cfg)
    bc.write_section(RESULTS_NAME, text)
    print(f"\nwrote the {RESULTS_NAME} section of {bc.BENCHMARKS}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--per-device", type=int, default=6, help="completions per device per micro-batch")
    parser.add_argument("--micro-batches", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--completion", type=int, default=3584)
    parser.add_argument("--chunk", type=int, default=256, help="logprob_chunk_size")
    parser.add_argument("--no-remat", action="store_true")
    parser.add_argument("--attention", default=None,
                        help=f"comma list of {ATTENTIONS} (default einsum; with --one-gpu default all)")
    parser.add_argument("--one-gpu", action="store_true", help="72 completions on one device, micro-batch sweep")
    parser.add_argument("--micro-sizes", default="2,4,6", help="--one-gpu: completions per micro-batch")
    parser.add_argument("--benchmarks", action="store_true",
                        help="keep the results in runs/bench/update_memory.json and rewrite BENCHMARKS.md's section")
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite BENCHMARKS.md's section from runs/bench/update_memory.json")
    args = parser.parse_args()
    for a in (args.attention or "einsum").split(","):
        if a not in ATTENTIONS:
            raise SystemExit(f"--attention {a!r} is not one of {ATTENTIONS}")

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_enable_concurrency_optimized_scheduler=false")
    import jax

    jax.config.update("jax_num_cpu_devices", 1 if args.one_gpu else args.devices)
    from jgrpo.model import Qwen2Config

    cfg = Qwen2Config.from_json_file(CONFIG)
    if args.report_only:
        write_benchmarks(cfg)
        return
    if args.one_gpu:
        one_gpu(cfg, args)
    else:
        attentions = (args.attention or "einsum").split(",")
        for attention in attentions:
            if len(attentions) > 1:
                print(f"\n=== attention {attention} ===")
            started = time.perf_counter()
            r = compile_phases(cfg, args, devices=args.devices, per_device=args.per_device,
                               micro_batches=args.micro_batches, attention=attention)
            for phase, total in r["phases"].items():
                print(f"  peak during {phase:24s} {total / GB:8.2f} GB "
                      f"({100 * total / A40_BYTES:.0f}% of an A40's 48 GB)")
            if args.benchmarks:
                keep(args, f"mesh/{args.devices}x{args.per_device}x{args.micro_batches}/{attention}", r,
                     time.perf_counter() - started, mode="mesh", devices=args.devices, per_device=args.per_device,
                     micro_batches=args.micro_batches, attention=attention)
    if args.benchmarks:
        write_benchmarks(cfg)


if __name__ == "__main__":
    main()
