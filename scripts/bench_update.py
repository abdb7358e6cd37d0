"""Tokens per second of one GRPO update on the CPU: this JAX step against a plain PyTorch step
(transformers' Qwen2ForCausalLM, the same bnpo loss with a KL term, clip_grad_norm_, AdamW, the HF
scheduler; tests/test_grpo_reference.py) on the same model weights and the same batch.

    python scripts/bench_update.py [--layers 4 --hidden 256 --vocab 8192 --batch 8 --prompt 32 --completion 96]

The two steps alternate, so a change of load on a shared machine hits both; medians are reported.
Tokens count every position of prompt + completion that the update runs through the model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads slow JAX + torch in one process
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from jgrpo.grpo import (LossConfig, OptimizerConfig, RolloutBatch, group_advantages, init_train_state,  # noqa: E402
                        make_train_step)
from jgrpo.model import make_mesh  # noqa: E402
from ports.hf_load import load_hf_model  # noqa: E402
from tests.test_grpo_reference import TorchGRPO, completion_logprobs  # noqa: E402

G = 4


def make_checkpoint(folder: Path, args) -> transformers.Qwen2ForCausalLM:
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
                                   num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=args.prompt + args.completion, tie_word_embeddings=False)
    model = transformers.Qwen2ForCausalLM(cfg)
    model.save_pretrained(folder, safe_serialization=True)
    return model.train()


def make_batch(args, hf) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    b, p, c = args.batch, args.prompt, args.completion
    prompt_lengths = torch.randint(p // 2, p + 1, (b,), generator=g)
    prompt_mask = (torch.arange(p)[None] >= p - prompt_lengths[:, None]).long()
    completion_lengths = torch.randint(c // 4, c + 1, (b,), generator=g)
    completion_mask = (torch.arange(c)[None] < completion_lengths[:, None]).long()
    rewards = torch.rand(b, generator=g)
    t = dict(prompt_ids=torch.randint(0, args.vocab, (b, p), generator=g) * prompt_mask, prompt_mask=prompt_mask,
             completion_ids=torch.randint(0, args.vocab, (b, c), generator=g) * completion_mask,
             completion_mask=completion_mask, rewards=rewards, truncated=completion_lengths == c,
             advantages=torch.tensor(np.asarray(group_advantages(rewards.numpy(), G))))
    with torch.no_grad():
        t["ref_logps"], _ = completion_logprobs(hf, t["prompt_ids"], prompt_mask, t["completion_ids"], completion_mask)
    return t


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--completion", type=int, default=96)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        hf = make_checkpoint(Path(folder), args)
        mesh = make_mesh(devices=jax.devices()[:1])
        model = load_hf_model(folder, mesh=mesh)
    t = make_batch(args, hf)
    batch = RolloutBatch(**{k: jnp.asarray(v.numpy()) for k, v in t.items()})

    lr_kw = dict(total_steps=1000, warmup_steps=0, min_lr_rate=0.1)
    loss_cfg = LossConfig(beta=0.04, num_generations=G, micro_batch_size=args.batch,
                          logprob_chunk_size=args.completion)
    graphdef, state = init_train_state(model, OptimizerConfig(learning_rate=1e-5, **lr_kw), mesh)
    step = make_train_step(graphdef, state, loss_cfg, OptimizerConfig(learning_rate=1e-5, **lr_kw), mesh)
    torch_step = TorchGRPO(hf, lr=1e-5, loss_type="bnpo", beta=0.04, group_size=G, warmup_steps=0, total_steps=1000)

    started = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    print(f"JAX first step (compile + run): {time.perf_counter() - started:.1f} s")
    torch_step.step(t)

    jax_times, torch_times = [], []
    for _ in range(args.steps):
        started = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        jax_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        torch_step.step(t)
        torch_times.append(time.perf_counter() - started)

    tokens = args.batch * (args.prompt + args.completion)
    n_params = sum(p.numel() for p in hf.parameters())
    print(f"model: {n_params / 1e6:.1f} M parameters ({args.layers} layers, hidden {args.hidden}, vocab {args.vocab}); "
          f"batch {args.batch} x ({args.prompt} + {args.completion}) = {tokens} tokens per update; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    jax_s, torch_s = statistics.median(jax_times), statistics.median(torch_times)
    print(f"JAX   : {jax_s * 1e3:8.1f} ms/update  {tokens / jax_s:9.0f} tokens/s")
    print(f"torch : {torch_s * 1e3:8.1f} ms/update  {tokens / torch_s:9.0f} tokens/s")
    print(f"JAX / torch throughput: {torch_s / jax_s:.2f}x")


if __name__ == "__main__":
    main()
