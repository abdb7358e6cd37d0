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
import inspect
import math
import os
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


def kv_bytes_per_token(cfg) -> int:
    """K and V, bf16, every layer: 28 x 2 x 2 kv heads x 128 x 2 bytes for the 1.5B model."""
    return cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * 2


def vllm_plan(cfg, card_gb: float, sequences: int, tokens: int) -> dict:
    """vLLM's gpu_memory_utilization u on a card of card_gb: bf16 weights + the KV cache of
    `sequences` x `tokens` + the activation reserve, rounded up to 0.01; JAX gets 1 - u - headroom."""
    kv_gb = sequences * tokens * kv_bytes_per_token(cfg) / GB
    need = VLLM_WEIGHTS_GB + kv_gb + VLLM_RESERVE_GB
    u = math.ceil(100 * need / card_gb) / 100
    return {"card_gb": card_gb, "kv_cache_gb": kv_gb, "vllm_needs_gb": need, "utilization": u,
            "jax_fraction": round(1 - u - HEADROOM, 3), "jax_budget_gb": card_gb * (1 - u - HEADROOM)}


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
    plans = [vllm_plan(cfg, card, total, tokens) for card in CARDS_GB]
    print(f"One GPU: {PROMPTS} prompts x {GROUP} = {total} completions of {args.prompt}+{args.completion} tokens "
          f"on a 1-device mesh; micro-batch sizes {sizes}; attention {attentions}")
    print(f"vLLM's share: bf16 weights {VLLM_WEIGHTS_GB:.2f} GB + KV cache {total} x {tokens} tokens x "
          f"{kv_bytes_per_token(cfg):,} B/token ({cfg.num_hidden_layers} layers x 2 x {cfg.num_key_value_heads} "
          f"kv heads x {cfg.head_dim} x 2 B) = {plans[0]['kv_cache_gb']:.2f} GB + activations/CUDA graphs "
          f"{VLLM_RESERVE_GB:.1f} GB = {plans[0]['vllm_needs_gb']:.2f} GB")
    for p in plans:
        print(f"  {p['card_gb']} GB card: gpu_memory_utilization {p['utilization']:.2f} "
              f"({p['utilization'] * p['card_gb']:.2f} GB), headroom {HEADROOM:.0%}, JAX "
              f"XLA_PYTHON_CLIENT_MEM_FRACTION {p['jax_fraction']:.3f} = {p['jax_budget_gb']:.2f} GB")
    results = []
    for attention in attentions:
        for m in sizes:
            print(f"\n=== micro-batch {m}, attention {attention} ===")
            r = compile_phases(cfg, args, devices=1, per_device=m, micro_batches=total // m, attention=attention)
            results.append((m, attention, r))
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
                        help=f"one of {ATTENTIONS} (default einsum); with --one-gpu a comma list (default all)")
    parser.add_argument("--one-gpu", action="store_true", help="72 completions on one device, micro-batch sweep")
    parser.add_argument("--micro-sizes", default="2,4,6", help="--one-gpu: completions per micro-batch")
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
    if args.one_gpu:
        one_gpu(cfg, args)
        return
    r = compile_phases(cfg, args, devices=args.devices, per_device=args.per_device,
                       micro_batches=args.micro_batches, attention=args.attention or "einsum")
    for phase, total in r["phases"].items():
        print(f"  peak during {phase:24s} {total / GB:8.2f} GB ({100 * total / A40_BYTES:.0f}% of an A40's 48 GB)")


if __name__ == "__main__":
    main()
