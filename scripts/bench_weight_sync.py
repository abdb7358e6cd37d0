"""Weight-sync time from the JAX trainer's parameters into vLLM for the real
DeepSeek-R1-Distill-Qwen-1.5B shapes (random bf16 weights), through both paths: in memory
(tensors sharing the JAX buffers, through the worker's reload_weights) and through a safetensors
folder on /dev/shm. Each path is timed `--repeats` times; the median is reported.

Memory: the JAX copy (3.5 GB), vLLM's copy (3.5 GB), the folder (3.5 GB, in RAM on /dev/shm) and
vLLM's KV cache (VLLM_CPU_KVCACHE_SPACE): about 12-14 GB at peak. Run it alone.

    python scripts/bench_weight_sync.py [--repeats 3] [--sync-dir /dev/shm/jgrpo-bench-sync]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from jgrpo.model import DtypePolicy, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b/config.json"


def random_model(cfg: Qwen2Config) -> Qwen2ForCausalLM:
    """Random bf16 parameters, filled tensor by tensor from a cheap generator: what is synced
    matters, not how it was initialised."""
    policy = DtypePolicy(param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, policy=policy, rngs=nnx.Rngs(0))))
    fill = jax.jit(lambda key, shape: 0.02 * jax.random.normal(key, shape, jnp.bfloat16), static_argnums=1)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, [fill(k, x.shape) for k, x in zip(keys, leaves)]))


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sync-dir", type=Path, default=Path("/dev/shm/jgrpo-bench-sync"))
    args = parser.parse_args()

    from jgrpo.sampling import SamplingParams
    from jgrpo.sampling.vllm_engine import VllmEngine

    cfg = Qwen2Config.from_json_file(CONFIG)
    start = time.perf_counter()
    model = random_model(cfg)
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"random model: {n_params / 1e9:.2f}B parameters in {time.perf_counter() - start:.1f} s, "
          f"peak RSS {rss_gb():.1f} GB", flush=True)
    try:
        start = time.perf_counter()
        engine = VllmEngine.from_model(model, eos_token_ids=[cfg.eos_token_id], export_dir=args.sync_dir,
                                       sync_dir=args.sync_dir, dtype="bfloat16", enforce_eager=True,
                                       max_model_len=512)
        print(f"folder written + vLLM started: {time.perf_counter() - start:.1f} s, peak RSS {rss_gb():.1f} GB",
              flush=True)
        results = {}
        for via in ("memory", "folder"):
            times = [engine.sync_weights(model, via=via).seconds for _ in range(args.repeats)]
            results[via] = statistics.median(times)
            print(f"sync via {via}: " + ", ".join(f"{t:.2f}" for t in times) + f" s; peak RSS {rss_gb():.1f} GB",
                  flush=True)
        out = engine.generate([[cfg.bos_token_id, 100, 200]], SamplingParams(temperature=0.0, max_new_tokens=4))
        print(f"vLLM generates after the syncs: {out[0].token_ids.tolist()}")
    finally:
        shutil.rmtree(args.sync_dir, ignore_errors=True)
    print(json.dumps({"parameters": n_params, "sync_seconds": results, "peak_rss_gb": rss_gb()}))


if __name__ == "__main__":
    main()
