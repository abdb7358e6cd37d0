"""Per-device memory of the compiled GRPO update for the real 1.5B model, without allocating it.

open-rs layout: 3 training devices (fsdp), each holding 6 completions of 512 prompt + 3584
completion tokens per micro-batch, 4 micro-batches per optimizer step (72 completions); fp32
master weights with bf16 compute, remat on, AdamW, and a bf16 frozen reference model whose
log-probs come from a separate no-grad jit. Both programs are lowered against abstract inputs
(ShapeDtypeStructs carrying shardings) and compiled; XLA's buffer assignment reports the bytes.

    python scripts/update_memory.py [--devices 3] [--per-device 6] [--micro-batches 4]

Numbers come from the CPU backend: its fusion and bf16 handling differ from a GPU's (it computes
bf16 matmuls through fp32 copies), so read them as an estimate of the GPU program, not a
measurement of it. XLA:CPU's default concurrency-optimised scheduler runs every rematerialised
forward early and so keeps all layers' activations alive; the memory-minimising scheduler used
here is the one that behaves like a GPU's memory-aware scheduling.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b/config.json"
A40_BYTES = 48e9
GB = 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--per-device", type=int, default=6, help="completions per device per micro-batch")
    parser.add_argument("--micro-batches", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--completion", type=int, default=3584)
    parser.add_argument("--chunk", type=int, default=256, help="logprob_chunk_size")
    parser.add_argument("--no-remat", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_enable_concurrency_optimized_scheduler=false")
    import jax

    jax.config.update("jax_num_cpu_devices", args.devices)
    import jax.numpy as jnp
    from flax import nnx

    from jgrpo.grpo import LossConfig, OptimizerConfig, RolloutBatch, abstract_train_state, make_logprob_fn, \
        make_train_step
    from jgrpo.model import DtypePolicy, Qwen2Config, Qwen2ForCausalLM, batch_sharding, make_mesh

    cfg = Qwen2Config.from_json_file(CONFIG)
    mesh = make_mesh(fsdp=args.devices)
    micro = args.per_device * args.devices
    batch_size = micro * args.micro_batches
    loss_cfg = LossConfig(beta=0.04, num_generations=6, micro_batch_size=micro, logprob_chunk_size=args.chunk)
    opt_cfg = OptimizerConfig()

    def abstract_params(policy):
        with jax.set_mesh(mesh):
            model = nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, policy=policy, remat=not args.no_remat,
                                                            rngs=nnx.Rngs(0)))
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
    print(f"model {CONFIG.parent.name}: {n_params / 1e9:.3f} B parameters, {cfg.num_hidden_layers} layers, "
          f"vocab {cfg.vocab_size}")
    print(f"mesh fsdp={args.devices}; micro-batch {args.per_device}/device x {args.micro_batches} accumulation = "
          f"{batch_size} completions of {P}+{C} tokens; params fp32, compute bf16, remat={not args.no_remat}, "
          f"lm-head chunk {args.chunk}")

    def analyse(name, fn, *inputs):
        started = time.perf_counter()
        stats = fn.lower(*inputs).compile().memory_analysis()
        peak = (stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
                + stats.temp_size_in_bytes)
        print(f"\n{name} (compiled in {time.perf_counter() - started:.0f} s), per device:")
        rows = [("arguments", stats.argument_size_in_bytes), ("outputs", stats.output_size_in_bytes),
                ("aliased (donated)", stats.alias_size_in_bytes), ("temporaries", stats.temp_size_in_bytes),
                ("program peak = args + outputs - aliased + temps", peak)]
        for label, value in rows:
            print(f"  {label:48s} {value / GB:8.2f} GB")
        return peak

    def per_device(tree):
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)) / args.devices

    step = make_train_step(graphdef, state, loss_cfg, opt_cfg, mesh)
    logprobs = make_logprob_fn(graphdef, ref_params, mesh, micro_batch_size=micro, chunk_size=args.chunk)
    ids = (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask)
    # What else sits on the device while each program runs: the reference weights during the
    # update, the whole train state during the reference pass.
    phases = {
        "update": analyse("update: micro-batch gradients, clip, AdamW (state donated)", step, state, batch)
        + per_device(ref_params),
        "reference log-probs": analyse("reference log-probs (no grad, bf16 params)", logprobs, ref_params, *ids)
        + per_device(state),
    }
    print(f"\nresident per device: train state {per_device(state) / GB:.2f} GB (params "
          f"{per_device(state.params) / GB:.2f}, AdamW {per_device(state.opt_state) / GB:.2f}), reference "
          f"{per_device(ref_params) / GB:.2f} GB")
    for phase, total in phases.items():
        print(f"  peak during {phase:24s} {total / GB:8.2f} GB ({100 * total / A40_BYTES:.0f}% of an A40's 48 GB)")

if __name__ == "__main__":
    main()
