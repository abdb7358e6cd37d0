"""The two attention kernels (jgrpo/model/attention.py) on this machine's backend: forward and
backward of the decoder's hidden states, einsum against fused, on the same weights and batch.

The shape is one 1.5B layer's attention (12 query heads over 2 KV heads, head_dim 128, hidden
1536) at a training sequence length, a few layers deep; rows are left-padded to mixed lengths as
the trainer's are. The two kernels alternate, so a change of load on a shared machine hits both;
medians are reported, with their ratio, and written into this script's section of BENCHMARKS.md.

    python scripts/bench_attention.py [--layers 2 --batch 2 --seq 512 --repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import bench_common as bc
from jgrpo.model import Qwen2Config, Qwen2ForCausalLM

KERNELS = ("einsum", "fused")


def batch(rows: int, seq: int, vocab: int, seed: int = 0):
    """Left-padded rows whose lengths run from a quarter of `seq` up to all of it."""
    rng = np.random.default_rng(seed)
    lengths = np.linspace(seq // 4, seq, rows).astype(int)
    ids = rng.integers(3, vocab, (rows, seq)).astype(np.int32)
    mask = (np.arange(seq)[None, :] >= seq - lengths[:, None]).astype(np.int32)
    return jnp.asarray(ids * mask), jnp.asarray(mask)


def step_fn():
    def loss(model, ids, mask):
        hidden, _ = model.hidden_states(ids, mask)
        return jnp.sum(jnp.square(hidden.astype(jnp.float32)) * mask[..., None])
    return nnx.jit(nnx.value_and_grad(loss))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    cfg = Qwen2Config(vocab_size=4096, hidden_size=1536, intermediate_size=8960, num_hidden_layers=args.layers,
                      num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096)
    models = {name: Qwen2ForCausalLM(cfg, attention=name, rngs=nnx.Rngs(0)) for name in KERNELS}
    ids, mask = batch(args.batch, args.seq, cfg.vocab_size)
    steps = {name: step_fn() for name in KERNELS}
    values = {}
    for name in KERNELS:  # compile, and check the two agree before timing them
        value, grads = steps[name](models[name], ids, mask)
        values[name] = float(value)
        jax.block_until_ready(grads)
    assert abs(values["einsum"] - values["fused"]) <= 1e-4 * abs(values["einsum"]), values
    seconds = {name: [] for name in KERNELS}
    for _ in range(args.repeats):
        for name in KERNELS:
            start = time.perf_counter()
            jax.block_until_ready(steps[name](models[name], ids, mask))
            seconds[name].append(time.perf_counter() - start)
    einsum, fused = (statistics.median(seconds[name]) for name in KERNELS)
    table = bc.markdown_table(["kernel", "forward + backward, s (median)", "vs einsum"], [
        ["einsum", f"{einsum:.3f}", "1.00"], ["fused", f"{fused:.3f}", f"{fused / einsum:.2f}"]])
    print(table)
    ratio = fused / einsum
    verdict = ("within 10% of each other: neither kernel wins here" if 0.9 <= ratio <= 1.1 else
               f"fused takes {ratio:.2f}x einsum's time")
    bc.write_section("bench_attention", f"""
## Attention kernels on {jax.default_backend().upper()} (`python scripts/bench_attention.py`)

Forward and backward of the decoder's hidden states with each kernel of `model.attention`, on the same
weights and left-padded batch: {args.layers} layers of the 1.5B's width (hidden 1536, 12 query / 2 KV heads, head
dim 128), batch {args.batch} x {args.seq} tokens, fp32, medians of {args.repeats} alternating runs. {bc.machine()}.

{table}

The two are {verdict}. `model.attention: auto` picks einsum off the GPU: XLA's fallback for
`jax.nn.dot_product_attention` materialises the scores as einsum does, and einsum accepts any mask.
""")


if __name__ == "__main__":
    main()
