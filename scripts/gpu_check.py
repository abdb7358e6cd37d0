"""The GPU measurements as one prepared command: checks and timings on one NVIDIA GPU (an H200),
each stage in a process of its own under a time guard, the JSON rewritten after every stage.

    python scripts/gpu_check.py [--stages 1,3,5] [--out DIR_OR_FILE.json] [--smoke]

Stages:
 1 backend             JAX's backend is the GPU: device kind and count, versions (fails loudly if
                       not, and then nothing else runs, unless --smoke)
 2 import_order        `import jax; import torch` and the reverse, each in its own process, a small
                       op on both sides of the GPU
 3 dlpack              JAX bf16/fp32 device arrays -> torch.from_dlpack keep the device pointer (zero
                       copy), values bit-equal; torch -> JAX the same
 4 logprobs_vs_hf      jgrpo's log-prob pass (make_logprob_fn) equals torch log_softmax of transformers'
                       logits for a small random Qwen2 loaded with ports.hf_load, fp32 both, TF32 off
 5 update_1p5b         the update of the real 1.5B config (random weights, fp32 masters, bf16 compute,
                       remat, open_rs3's loss and optimizer) at 6 x (512 + 3584) on one device: compile
                       time, compiled memory, peak bytes in use, step time, MFU (FLOPs as
                       scripts/bench_budget.py counts them, 989 TFLOP/s bf16 dense peak).
                       --update-micro 2 / --update-batch 12 change the micro-batch and the batch; the
                       one-GPU update of 72 in micro-batches of 6 needs about this stage's peak + the
                       bf16 reference (3.55 GB), which this stage does not hold
 6 attention_layer     einsum vs fused attention on one 1.5B decoder layer at 6 x 4096, bf16: fwd+bwd
                       time, compiled memory, largest output difference
 7 reference_logprobs  the reference log-prob pass at 18 x (512 + 3584), bf16 parameters: time, tokens/s
 8 jax_sampler         the JAX sampler on the 1.5B config, 12 prompts x 6 of ~512 tokens, 512 new
                       tokens (forced: min_new_tokens = max_new_tokens): tokens/s

Writes JSON (default $OUT/gpu_check.json when $OUT is set, else runs/gpu_check/gpu_check.json),
`gpu_check.md` beside it (a section for BENCHMARKS.md) and each stage's log under `logs/`. The
whole run stays under --deadline seconds (default 460): every stage has its own guard and gets at
most what is left; a stage that fails or runs out of time is recorded with its error, and the next
one runs. `--smoke` runs every stage at toy sizes on the CPU (what tests/test_gpu_check.py does).
`--render JSON [--benchmarks]` only rewrites the Markdown from a JSON (and into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_1P5B = ROOT / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b/config.json"
RECIPE = ROOT / "conf/open_rs3.yaml"
H200_BF16_PEAK = 989e12  # FLOP/s, dense bf16 tensor core
GB = 1e9
SCHEMA = "jgrpo-gpu-check/1"

STAGES = {
    1: ("backend", "JAX backend is the GPU"),
    2: ("import_order", "JAX and torch in one process, both import orders"),
    3: ("dlpack", "DLPack hand-over JAX <-> torch is zero-copy"),
    4: ("logprobs_vs_hf", "jgrpo log-probs = transformers' (fp32, small random Qwen2)"),
    5: ("update_1p5b", "update step, real 1.5B config, 6 x (512 + 3584), one device"),
    6: ("attention_layer", "einsum vs fused attention, one 1.5B decoder layer, 6 x 4096"),
    7: ("reference_logprobs", "reference log-prob pass, 18 x (512 + 3584), bf16 params"),
    8: ("jax_sampler", "JAX sampler, 1.5B config, 12 prompts x 6"),
}
# Seconds each stage may take on the GPU (compile included); the deadline caps their sum.
GUARD_S = {1: 60, 2: 100, 3: 60, 4: 90, 5: 240, 6: 100, 7: 120, 8: 150}
SMOKE_GUARD_S = {1: 60, 2: 90, 3: 60, 4: 90, 5: 120, 6: 90, 7: 90, 8: 90}
MIN_STAGE_S = 15  # a stage with less time than this left is skipped
TORCH_STAGES = (2, 3, 4)  # share the GPU with torch: JAX allocates on demand there
PACKAGES = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt", "flax",
            "optax", "orbax-checkpoint", "torch", "transformers", "numpy", "ml_dtypes", "nvidia-cudnn-cu12",
            "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12")


# ----------------------------------------------------------------------------------------------
# sizes: the GPU run and the CPU smoke run


def sizes(smoke: bool) -> dict:
    if smoke:
        return dict(update=dict(batch=6, micro=6, prompt=16, completion=48, warmup=1, steps=2),
                    layer=dict(batch=2, length=64, warmup=1, steps=3),
                    reference=dict(batch=18, micro=6, prompt=16, completion=48, warmup=1, steps=2),
                    sampler=dict(prompts=12, n=6, prompt_min=12, prompt_max=16, new_tokens=16),
                    logprobs=dict(batch=4, prompt=12, completion=20),
                    dlpack_big_elements=1 << 20)
    return dict(update=dict(batch=6, micro=6, prompt=512, completion=3584, warmup=1, steps=3),
                layer=dict(batch=6, length=4096, warmup=2, steps=5),
                reference=dict(batch=18, micro=6, prompt=512, completion=3584, warmup=1, steps=3),
                sampler=dict(prompts=12, n=6, prompt_min=480, prompt_max=512, new_tokens=512),
                logprobs=dict(batch=4, prompt=64, completion=192),
                dlpack_big_elements=128 << 20)  # 256 MB of bf16


def model_config(smoke: bool):
    """The real DeepSeek-R1-Distill-Qwen-1.5B config, or a toy Qwen2 for --smoke."""
    from jgrpo.model import Qwen2Config

    if not smoke:
        return Qwen2Config.from_json_file(CONFIG_1P5B)
    return Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, eos_token_id=2)


def tiny_hf_kwargs(smoke: bool) -> dict:
    """Stage 4's transformers Qwen2: small, untied, grouped-query."""
    if smoke:
        return dict(vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2)
    return dict(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                num_attention_heads=8, num_key_value_heads=2)


# ----------------------------------------------------------------------------------------------
# the worker side: one stage in this process, its results in a JSON file rewritten as they come


class Recorder:
    """The stage's results, rewritten to `path` (atomically) on every update, so a stage killed by
    its time guard still leaves what it had measured."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {}

    def update(self, **values):
        self.data.update(values)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_jsonable))
        os.replace(tmp, self.path)


def _jsonable(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def _median(xs):
    return statistics.median(xs) if xs else None


def _memory_analysis(compiled) -> dict:
    """Bytes of XLA's buffer assignment; peak as scripts/update_memory.py computes it."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    out = {k: int(getattr(stats, f"{k}_size_in_bytes")) for k in ("argument", "output", "alias", "temp",
                                                                   "generated_code")}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def _memory_stats(device) -> dict:
    try:
        return dict(device.memory_stats() or {})
    except Exception:  # CPU devices may not implement it
        return {}


def _mesh1():
    import jax

    from jgrpo.model import make_mesh

    return make_mesh(fsdp=1, devices=jax.devices()[:1])


def _model_kwargs(attention: str | None) -> dict:
    """{"attention": ...} when this Qwen2ForCausalLM has the option."""
    import inspect

    from jgrpo.model import Qwen2ForCausalLM

    if attention and "attention" in inspect.signature(Qwen2ForCausalLM.__init__).parameters:
        return {"attention": attention}
    return {}


def _random_model(cfg, policy, *, remat: bool, attention: str | None):
    """Random weights built straight into their sharding on the one-device mesh."""
    from flax import nnx

    from jgrpo.model import Qwen2ForCausalLM, build_sharded

    return build_sharded(lambda: Qwen2ForCausalLM(cfg, policy=policy, remat=remat, rngs=nnx.Rngs(0),
                                                  **_model_kwargs(attention)), _mesh1())


def _with_attention(graphdef, params, kernel: str):
    """The same model with another attention kernel: (graphdef, params) in, graphdef out."""
    from flax import nnx

    model = nnx.merge(graphdef, params)
    model.attention = kernel
    return nnx.split(model, nnx.Param)[0]


def _compile_or_fall_back(rec: Recorder, args, graphdef, params, compile_for):
    """compile_for(graphdef) -> compiled; if the fused kernel (attention "auto" on a GPU) fails to
    lower or compile, records why and compiles with the einsum kernel instead, so the stage still
    measures something. Returns (compiled, graphdef)."""
    try:
        return compile_for(graphdef), graphdef
    except Exception as e:  # noqa: BLE001 - cuDNN missing or refusing these shapes
        if args.attention != "auto" or rec.data.get("attention") != "fused":
            raise
        rec.update(fused_error=" ".join(f"{type(e).__name__}: {e}".split())[:500], attention="einsum",
                   attention_fallback="fused failed to compile; measured with einsum")
        graphdef = _with_attention(graphdef, params, "einsum")
        return compile_for(graphdef), graphdef


def _full_rows(rng, batch: int, prompt: int, completion: int, vocab: int):
    """Every position real (the longest rollout, the most work): ids and all-ones masks, int32."""
    import numpy as np

    return (rng.integers(3, vocab, (batch, prompt), dtype=np.int32), np.ones((batch, prompt), np.int32),
            rng.integers(3, vocab, (batch, completion), dtype=np.int32), np.ones((batch, completion), np.int32))


def _timed_calls(fn, count: int) -> list[float]:
    import jax

    times = []
    for _ in range(count):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def stage_backend(rec: Recorder, args):
    import shutil
    from importlib import metadata

    import jax
    import jax.numpy as jnp
    import jaxlib

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    devices = jax.devices()
    rec.update(backend=jax.default_backend(), platform=devices[0].platform, device_kind=devices[0].device_kind,
               device_count=len(devices), jax=jax.__version__, jaxlib=jaxlib.__version__, versions=versions,
               python=platform.python_version())
    stats = _memory_stats(devices[0])
    if stats.get("bytes_limit"):
        rec.update(bytes_limit=int(stats["bytes_limit"]))
    if shutil.which("nvidia-smi"):
        try:
            query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            rec.update(nvidia_smi=query.stdout.strip().splitlines())
        except (OSError, subprocess.SubprocessError) as e:
            rec.update(nvidia_smi=[f"nvidia-smi failed: {e}"])
    x = jnp.arange(512 * 512, dtype=jnp.float32).reshape(512, 512) / (512 * 512)
    start = time.perf_counter()
    value = float(jnp.sum(x @ x))
    rec.update(first_op_s=time.perf_counter() - start, first_op_finite=math.isfinite(value))
    if jax.default_backend() != "gpu" and not args.smoke:
        raise RuntimeError(f"JAX's backend is {jax.default_backend()!r} ({devices[0].device_kind}), not the GPU: "
                           "jax's CUDA plugin is missing or cannot see the device")


IMPORT_CHILD = r"""
import json, sys, time
order, want_gpu = sys.argv[1], sys.argv[2] == "gpu"
start = time.perf_counter()
if order == "jax_first":
    import jax, jax.numpy as jnp
    import torch
else:
    import torch
    import jax, jax.numpy as jnp
import_s = time.perf_counter() - start
device = jax.devices()[0]
x = jnp.arange(256 * 256, dtype=jnp.float32).reshape(256, 256) / 65536
jax_sum = float(jnp.sum(x @ x))
tdev = "cuda" if want_gpu else "cpu"
t = torch.arange(256 * 256, dtype=torch.float32, device=tdev).reshape(256, 256) / 65536
torch_sum = float((t @ t).sum())  # .item() synchronises
jax_again = float(jnp.sum(x @ x))  # JAX still works after torch has its context
ok = (abs(jax_sum - torch_sum) <= 1e-2 * abs(torch_sum) and jax_again == jax_sum
      and (device.platform == "gpu") == want_gpu and (torch.cuda.is_available() or not want_gpu))
print(json.dumps({"ok": bool(ok), "import_s": import_s, "jax_device": str(device), "jax_platform": device.platform,
                  "torch_device": str(t.device), "torch_cuda": torch.cuda.is_available(),
                  "torch_device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                  "jax_sum": jax_sum, "torch_sum": torch_sum, "jax": jax.__version__, "torch": torch.__version__}))
"""


def stage_import_order(rec: Recorder, args):
    per_child = 40 if args.smoke else 45
    failures = []
    for order in ("jax_first", "torch_first"):
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-c", IMPORT_CHILD, order, "cpu" if args.smoke else "gpu"],
                                  capture_output=True, text=True, timeout=per_child)
        except subprocess.TimeoutExpired:
            rec.update(**{order: {"ok": False, "error": f"timed out after {per_child} s"}})
            failures.append(f"{order}: timed out after {per_child} s")
            continue
        lines = proc.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            result = {"ok": False, "error": f"exit {proc.returncode}: {tail}"}
        result["seconds"] = time.perf_counter() - start
        rec.update(**{order: result})
        if not result["ok"]:
            failures.append(f"{order}: {result.get('error', result)}")
    if failures:
        raise RuntimeError("; ".join(failures))


def stage_dlpack(rec: Recorder, args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    device = jax.devices()[0]
    want = "cpu" if args.smoke else "cuda"
    bits = {jnp.bfloat16: (np.uint16, torch.int16), jnp.float32: (np.uint32, torch.int32)}
    failures = []
    for dtype, (np_bits, torch_bits) in bits.items():
        name = jnp.dtype(dtype).name
        x = jax.device_put((jnp.arange(64 * 48, dtype=jnp.float32).reshape(64, 48) * 0.37 - 500).astype(dtype), device)
        x.block_until_ready()
        t = torch.from_dlpack(x)
        same_bits = np.array_equal(np.asarray(x).view(np_bits), t.view(torch_bits).cpu().numpy().view(np_bits))
        # and back: a torch tensor on the same device into JAX
        u = torch.arange(64 * 48, device=want, dtype=torch.float32).reshape(64, 48).to(t.dtype) * 3 - 7
        y = jnp.from_dlpack(u)
        back_bits = np.array_equal(np.asarray(y).view(np_bits), u.view(torch_bits).cpu().numpy().view(np_bits))
        r = {"jax_ptr": x.unsafe_buffer_pointer(), "torch_ptr": t.data_ptr(), "torch_device": str(t.device),
             "torch_dtype": str(t.dtype), "shape": list(t.shape), "values_equal": bool(same_bits),
             "zero_copy": x.unsafe_buffer_pointer() == t.data_ptr(),
             "torch_to_jax_zero_copy": y.unsafe_buffer_pointer() == u.data_ptr(),
             "torch_to_jax_values_equal": bool(back_bits), "jax_device_of_torch": str(y.devices())}
        rec.update(**{name: r})
        # torch -> JAX zero-copy is recorded, not required: the weight sync goes JAX -> torch.
        if not (r["zero_copy"] and r["values_equal"] and t.device.type == want and r["torch_to_jax_values_equal"]):
            failures.append(f"{name}: {r}")
    # A weight-sized hand-over: its time is the cost of wrapping, not of copying.
    big = jax.device_put(jnp.zeros((args.sizes["dlpack_big_elements"],), jnp.bfloat16), device).block_until_ready()
    start = time.perf_counter()
    tb = torch.from_dlpack(big)
    seconds = time.perf_counter() - start
    rec.update(big={"bytes": big.nbytes, "seconds": seconds, "zero_copy": big.unsafe_buffer_pointer() == tb.data_ptr()})
    if failures or big.unsafe_buffer_pointer() != tb.data_ptr():
        raise RuntimeError("DLPack hand-over copied or changed values: " + "; ".join(failures or ["big array"]))


def stage_logprobs_vs_hf(rec: Recorder, args):
    import jax
    import numpy as np
    import torch
    import transformers
    from flax import nnx

    from jgrpo.grpo import make_logprob_fn
    from jgrpo.model import DtypePolicy
    from ports.hf_load import load_hf_model

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on both sides
    torch.backends.cudnn.allow_tf32 = False
    jax.config.update("jax_default_matmul_precision", "highest")
    tolerance = 1e-4
    dev = "cpu" if args.smoke else "cuda"
    s = args.sizes["logprobs"]
    kw = tiny_hf_kwargs(args.smoke)
    torch.manual_seed(0)
    config = transformers.Qwen2Config(**kw, tie_word_embeddings=False, max_position_embeddings=1024,
                                      rope_theta=10000.0, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                                      attn_implementation="eager")  # the plain reference kernel
    hf = transformers.Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # biases and norms random too, so a mistake in either shows
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(1)
    b, P, C, vocab = s["batch"], s["prompt"], s["completion"], kw["vocab_size"]
    p_len = torch.randint(P // 3, P + 1, (b,), generator=g)
    p_len[0] = P
    c_len = torch.randint(C // 3, C + 1, (b,), generator=g)
    c_len[0] = C
    prompt_mask = (torch.arange(P)[None] >= (P - p_len)[:, None]).long()  # left-padded
    completion_mask = (torch.arange(C)[None] < c_len[:, None]).long()  # right-padded
    prompt_ids = torch.randint(3, vocab, (b, P), generator=g) * prompt_mask
    completion_ids = torch.randint(3, vocab, (b, C), generator=g) * completion_mask

    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder, safe_serialization=True)
        hf = hf.to(dev)
        with torch.no_grad():
            ids = torch.cat([prompt_ids, completion_ids], 1).to(dev)
            mask = torch.cat([prompt_mask, completion_mask], 1).to(dev)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
            logp = torch.log_softmax(logits[:, P - 1:-1], -1)
            reference = logp.gather(-1, completion_ids.to(dev)[..., None])[..., 0].cpu().numpy()
        valid = completion_mask.numpy().astype(bool)
        results = {"tolerance": tolerance, "dtype": "float32", "tf32": False, "jax_matmul_precision": "highest",
                   "hf_attention": hf.config._attn_implementation, "batch": b, "prompt": P, "completion": C,
                   "config": kw, "tokens_compared": int(valid.sum())}
        worst = 0.0
        for attention in ("einsum", "fused") if _model_kwargs("einsum") else (None,):
            model = load_hf_model(folder, policy=DtypePolicy.from_names("float32", "float32"), mesh=_mesh1(),
                                  **({"attention": attention} if attention else {}))
            graphdef, params = nnx.split(model, nnx.Param)
            fn = make_logprob_fn(graphdef, params, _mesh1(), micro_batch_size=b)
            ours = np.asarray(fn(params, *(np.asarray(x.numpy(), np.int32) for x in
                                           (prompt_ids, prompt_mask, completion_ids, completion_mask))))
            diff = float(np.max(np.abs(ours - reference)[valid]))
            results[f"max_abs_diff_{attention or 'default'}"] = diff
            worst = max(worst, diff)
        results["max_abs_diff"] = worst
        results["within_tolerance"] = worst <= tolerance
        rec.update(**results)
    if not worst <= tolerance:
        raise AssertionError(f"log-probs differ from transformers' by {worst:.3g} > {tolerance:g}")


def stage_update(rec: Recorder, args):
    import dataclasses

    import jax
    import numpy as np

    from jgrpo.config import load_config
    from jgrpo.grpo import RolloutBatch, init_train_state, make_train_step
    from jgrpo.model import DtypePolicy, batch_sharding

    s = dict(args.sizes["update"])
    s["batch"] = args.update_batch or s["batch"]
    s["micro"] = args.update_micro or s["micro"]
    run = load_config(RECIPE)
    cfg = model_config(args.smoke)
    mesh = _mesh1()
    policy = DtypePolicy.from_names(run.model.param_dtype, run.model.compute_dtype)
    # bnpo averages over groups of 6 (one prompt); a micro-batch of 2 or 4 holds part of one, so it is
    # timed with groups of its own size (the same work and memory).
    group = run.loss.group_size if s["micro"] % run.loss.group_size == 0 else math.gcd(s["micro"], run.loss.group_size)
    loss_cfg = dataclasses.replace(run.loss, micro_batch_size=s["micro"], bnpo_group_size=group)
    B, P, C = s["batch"], s["prompt"], s["completion"]
    rec.update(batch=B, micro_batch=s["micro"], prompt=P, completion=C, param_dtype=run.model.param_dtype,
               compute_dtype=run.model.compute_dtype, remat=run.model.remat, loss_type=loss_cfg.loss_type,
               beta=loss_cfg.beta, bnpo_group_size=loss_cfg.group_size, logprob_chunk_size=loss_cfg.logprob_chunk_size, recipe=str(RECIPE.relative_to(ROOT)))
    start = time.perf_counter()
    model = _random_model(cfg, policy, remat=run.model.remat, attention=args.attention)
    graphdef, state = init_train_state(model, run.optim, mesh)
    jax.block_until_ready(state)
    attention = getattr(model, "attention", "einsum")
    del model
    rec.update(attention=attention,
               params=int(sum(x.size for x in jax.tree.leaves(state.params))), init_s=time.perf_counter() - start,
               bytes_in_use_after_init=_memory_stats(jax.devices()[0]).get("bytes_in_use"))

    rng = np.random.default_rng(0)
    prompt_ids, prompt_mask, completion_ids, completion_mask = _full_rows(rng, B, P, C, cfg.vocab_size)
    host = RolloutBatch(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                        completion_mask=completion_mask, advantages=rng.standard_normal(B).astype(np.float32),
                        rewards=rng.random(B).astype(np.float32), truncated=np.ones(B, bool),
                        ref_logps=-3 * rng.random((B, C)).astype(np.float32),
                        sampler_logps=-3 * rng.random((B, C)).astype(np.float32))
    batch = jax.tree.map(lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim)), host)

    start = time.perf_counter()
    compiled, graphdef = _compile_or_fall_back(
        rec, args, graphdef, state.params,
        lambda g: make_train_step(g, state, loss_cfg, run.optim, mesh).lower(state, batch).compile())
    rec.update(compile_s=time.perf_counter() - start, compiled_memory=_memory_analysis(compiled))

    times, losses = [], []
    for _ in range(s["warmup"] + s["steps"]):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
        losses.append(float(metrics["loss"]))
        rec.update(step_times_s=times)
    step_s = _median(times[s["warmup"]:])
    stats = _memory_stats(jax.devices()[0])
    finite = all(math.isfinite(v) for v in losses) and math.isfinite(float(metrics["grad_norm"]))
    rec.update(step_s=step_s, warmup=s["warmup"], peak_bytes_in_use=stats.get("peak_bytes_in_use"),
               bytes_limit=stats.get("bytes_limit"), losses=losses, grad_norm=float(metrics["grad_norm"]),
               metrics_finite=finite, tokens_per_s=B * (P + C) / step_s)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_budget import forward_flops, model_counts  # the budget's own count, unchanged

    flops = 4 * B * forward_flops(model_counts(cfg.to_hf_dict()), P, C)  # fwd + bwd (2) + remat fwd
    rec.update(flops_per_step=flops, peak_flops=H200_BF16_PEAK, tflops_per_s=flops / step_s / 1e12,
               mfu=flops / step_s / H200_BF16_PEAK,
               flop_count="scripts/bench_budget.py: 4 forwards per sequence (forward, backward = 2, remat = 1); "
                          "a forward = 2 x body params x tokens + 2 x LM head x completion tokens + "
                          "2 x attention width x layers x tokens^2")
    if not finite:
        raise AssertionError(f"non-finite loss or gradient norm: losses {losses}")


def stage_attention(rec: Recorder, args):
    import inspect

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jgrpo.model import DtypePolicy
    from jgrpo.model.qwen2 import DecoderLayer

    takes_lengths = "lengths" in inspect.signature(DecoderLayer.__call__).parameters
    if not takes_lengths:
        raise RuntimeError("this DecoderLayer has no fused-attention path (no `lengths` argument)")
    s = args.sizes["layer"]
    cfg = model_config(args.smoke)
    b, t, e = s["batch"], s["length"], cfg.hidden_size
    policy = DtypePolicy.from_names("float32", "bfloat16")  # the trainer's: fp32 masters, bf16 compute
    graphdef, params = nnx.split(DecoderLayer(cfg, policy=policy, rngs=nnx.Rngs(0)), nnx.Param)
    device = jax.devices()[0]
    params = jax.device_put(params, device)
    key_x, key_w = jax.random.split(jax.random.key(1))
    x = jax.device_put(jax.random.normal(key_x, (b, t, e), jnp.float32).astype(jnp.bfloat16), device)
    weights = jax.device_put(jax.random.normal(key_w, (b, t, e), jnp.float32), device)
    positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    rec.update(batch=b, length=t, heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads,
               head_dim=cfg.head_dim, hidden=e, param_dtype="float32", compute_dtype="bfloat16",
               timed="value_and_grad of sum(layer(x) * w) in layer params and x; jit, median")

    def forward(kernel):
        def run(params, x):
            layer = nnx.merge(graphdef, params)
            if kernel == "einsum":
                allowed = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (b, t, t))
                out, _ = layer(x, positions, allowed, None, None, 0)
            else:
                out, _ = layer(x, positions, None, jnp.full((b,), t, jnp.int32), None, 0)
            return out
        return run

    outputs, grads = {}, {}
    for kernel in ("einsum", "fused"):
        run = forward(kernel)

        def loss(params, x, run=run):
            return jnp.sum(run(params, x).astype(jnp.float32) * weights)

        fwd_bwd = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        start = time.perf_counter()
        compiled = fwd_bwd.lower(params, x).compile()
        compile_s = time.perf_counter() - start
        times = _timed_calls(lambda: compiled(params, x), s["warmup"] + s["steps"])
        fwd = jax.jit(run)
        fwd_times = _timed_calls(lambda: fwd(params, x), s["warmup"] + s["steps"])
        outputs[kernel] = np.asarray(fwd(params, x).astype(jnp.float32))
        grads[kernel] = np.asarray(compiled(params, x)[1][1].astype(jnp.float32))
        rec.update(**{kernel: {"compile_s": compile_s, "fwd_bwd_ms": 1e3 * _median(times[s["warmup"]:]),
                               "fwd_ms": 1e3 * _median(fwd_times[s["warmup"]:]),
                               "compiled_memory": _memory_analysis(compiled)}})
    diff = float(np.max(np.abs(outputs["einsum"] - outputs["fused"])))
    grad_diff = float(np.max(np.abs(grads["einsum"] - grads["fused"])))
    rec.update(max_abs_diff=diff, max_abs_output=float(np.max(np.abs(outputs["einsum"]))),
               max_abs_diff_grad_x=grad_diff, max_abs_grad_x=float(np.max(np.abs(grads["einsum"]))),
               fused_speedup=rec.data["einsum"]["fwd_bwd_ms"] / rec.data["fused"]["fwd_bwd_ms"],
               fused_backend="cudnn" if jax.default_backend() == "gpu" else "xla")
    if not (math.isfinite(diff) and math.isfinite(grad_diff)):
        raise AssertionError("non-finite difference between the attention kernels")


def stage_reference(rec: Recorder, args):
    import jax
    import numpy as np
    from flax import nnx

    from jgrpo.config import load_config
    from jgrpo.grpo import make_logprob_fn
    from jgrpo.model import DtypePolicy, batch_sharding

    s = args.sizes["reference"]
    run = load_config(RECIPE)
    cfg = model_config(args.smoke)
    mesh = _mesh1()
    B, P, C = s["batch"], s["prompt"], s["completion"]
    start = time.perf_counter()
    model = _random_model(cfg, DtypePolicy.from_names("bfloat16", "bfloat16"), remat=run.model.remat,
                          attention=args.attention)
    graphdef, params = nnx.split(model, nnx.Param)
    rec.update(batch=B, micro_batch=s["micro"], prompt=P, completion=C, param_dtype="bfloat16",
               attention=getattr(model, "attention", "einsum"), init_s=time.perf_counter() - start)
    del model
    rows = [jax.device_put(x, batch_sharding(mesh)) for x in
            _full_rows(np.random.default_rng(0), B, P, C, cfg.vocab_size)]
    start = time.perf_counter()
    compiled, graphdef = _compile_or_fall_back(
        rec, args, graphdef, params,
        lambda g: make_logprob_fn(g, params, mesh, micro_batch_size=s["micro"], temperature=run.loss.temperature,
                                  chunk_size=run.loss.logprob_chunk_size).lower(params, *rows).compile())
    rec.update(compile_s=time.perf_counter() - start, compiled_memory=_memory_analysis(compiled))
    times = _timed_calls(lambda: compiled(params, *rows), s["warmup"] + s["steps"])
    seconds = _median(times[s["warmup"]:])
    logps = np.asarray(compiled(params, *rows))
    stats = _memory_stats(jax.devices()[0])
    rec.update(times_s=times, seconds=seconds, tokens_per_s=B * (P + C) / seconds,
               completion_tokens_per_s=B * C / seconds, peak_bytes_in_use=stats.get("peak_bytes_in_use"),
               logps_finite=bool(np.isfinite(logps).all()), logps_mean=float(logps.mean()))
    if not np.isfinite(logps).all():
        raise AssertionError("non-finite reference log-probs")


def stage_sampler(rec: Recorder, args):
    import jax
    import numpy as np

    from jgrpo.config import load_config
    from jgrpo.model import DtypePolicy
    from jgrpo.sampling import SamplingParams, make_engine

    s = args.sizes["sampler"]
    run = load_config(RECIPE)
    cfg = model_config(args.smoke)
    start = time.perf_counter()
    # The trainer samples from its own model: fp32 masters, bf16 compute. Without remat: JaxEngine fails
    # on a remat=True model (nnx.remat inside its while_loop mutates Params of the outer trace).
    model = _random_model(cfg, DtypePolicy.from_names(run.model.param_dtype, run.model.compute_dtype),
                          remat=False, attention=args.attention)
    engine = make_engine("jax", model, eos_token_ids=cfg.eos_token_ids or (2,))
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, min(cfg.vocab_size, 150000), int(rng.integers(s["prompt_min"], s["prompt_max"] + 1)))
               .tolist() for _ in range(s["prompts"])]
    new = s["new_tokens"]
    params = SamplingParams(n=s["n"], temperature=run.rollout.temperature, top_p=run.rollout.top_p,
                            top_k=run.rollout.top_k, max_new_tokens=new, min_new_tokens=new, seed=0)
    rec.update(prompts=len(prompts), n=s["n"], completions_expected=len(prompts) * s["n"],
               prompt_lengths=[min(map(len, prompts)), max(map(len, prompts))], new_tokens=new,
               temperature=params.temperature, param_dtype=run.model.param_dtype,
               compute_dtype=run.model.compute_dtype, remat=False, init_s=time.perf_counter() - start,
               note=f"the engine pads {len(prompts)} prompts to a power of two and prompts to a power-of-two "
                    f"bucket; min_new_tokens = max_new_tokens = {new} so every completion has full length")
    start = time.perf_counter()
    first = engine.generate(prompts, params)
    rec.update(first_call_s=time.perf_counter() - start)  # compile + one run
    start = time.perf_counter()
    second = engine.generate(prompts, params)
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for c in second)
    rec.update(seconds=seconds, completions=len(second), tokens=tokens, tokens_per_s=tokens / seconds,
               ms_per_decode_step=1e3 * seconds / new, compile_s_estimate=rec.data["first_call_s"] - seconds,
               lengths=[min(len(c.token_ids) for c in first + second), max(len(c.token_ids) for c in first + second)],
               peak_bytes_in_use=_memory_stats(jax.devices()[0]).get("peak_bytes_in_use"))
    if len(second) != len(prompts) * s["n"] or tokens != len(second) * new:
        raise AssertionError(f"{len(second)} completions of {tokens} tokens, expected "
                             f"{len(prompts) * s['n']} x {new}")


STAGE_FUNCTIONS = {1: stage_backend, 2: stage_import_order, 3: stage_dlpack, 4: stage_logprobs_vs_hf,
                   5: stage_update, 6: stage_attention, 7: stage_reference, 8: stage_sampler}


def run_worker(args) -> int:
    sys.path.insert(0, str(ROOT))
    rec = Recorder(Path(args.result))
    args.sizes = sizes(args.smoke)
    try:
        STAGE_FUNCTIONS[args.worker](rec, args)
    except BaseException as e:  # noqa: BLE001 - recorded, then the process fails
        message = " ".join(f"{type(e).__name__}: {e}".split())
        rec.update(error=message[:500], traceback=traceback.format_exc()[-4000:])
        traceback.print_exc()
        return 1
    return 0


# ----------------------------------------------------------------------------------------------
# the driver: each stage in a subprocess under its guard, the JSON and Markdown after every stage


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _stage_env(number: int, smoke: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads slow JAX + torch in one process
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if smoke:
        env["JAX_PLATFORMS"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif number in TORCH_STAGES:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave the GPU to torch as well
    else:
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")  # the whole card to JAX (default 0.75)
    return env


def _run_stage(number: int, args, timeout: float, log_path: Path) -> tuple[str, dict, str | None]:
    """(status, results, error) of one stage run in its own process group, killed at `timeout`."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--worker", str(number), "--result",
               str(result_path), "--attention", args.attention] + (["--smoke"] if args.smoke else [])
        for flag in ("update_batch", "update_micro"):
            if getattr(args, flag, None):
                cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=_stage_env(number, args.smoke), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the stage and any process it started
                proc.wait()
                rc, timed_out = None, True
        try:
            results = json.loads(result_path.read_text())
        except (OSError, json.JSONDecodeError):
            results = {}
    error = results.pop("error", None)
    results.pop("traceback", None)  # it is in the log
    if timed_out:
        return "timeout", results, f"time guard: killed after {timeout:.0f} s"
    if rc != 0:
        if error is None:
            tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
            error = f"exit status {rc}: " + (tail[-1][:300] if tail else "no output")
        return "failed", results, error
    return "ok", results, None


def _default_out() -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    return ROOT / "runs" / "gpu_check" / "gpu_check.json"


def _out_path(out: str | None) -> Path:
    if out is None:
        return _default_out()
    path = Path(out)
    return path if path.suffix == ".json" else path / "gpu_check.json"


def _write(report: dict, path: Path) -> None:
    report["finished_utc"] = _now()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=_jsonable))
    os.replace(tmp, path)
    path.with_suffix(".md").write_text(render_markdown(report) + "\n")


def run_driver(args) -> int:
    out = _out_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = out.parent / "logs"
    logs.mkdir(exist_ok=True)
    selected = sorted({int(s) for s in args.stages.split(",")}) if args.stages else list(STAGES)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise SystemExit(f"--stages: no stage {unknown[0]}; stages are 1-{len(STAGES)}")
    guards = SMOKE_GUARD_S if args.smoke else GUARD_S
    deadline = args.deadline if args.deadline is not None else (300 if args.smoke else 460)
    started = time.perf_counter()
    report = {"schema": SCHEMA, "smoke": args.smoke, "argv": sys.argv[1:], "started_utc": _now(),
              "deadline_s": deadline, "attention": args.attention,
              "host": {"hostname": socket.gethostname(), "python": platform.python_version(),
                       "machine": platform.machine(), "cpus": os.cpu_count()},
              "stages": {}}
    abort = None
    for number in selected:
        name, title = STAGES[number]
        left = deadline - (time.perf_counter() - started)
        timeout = min(guards[number], left)
        entry = {"number": number, "title": title, "status": "skipped", "seconds": 0.0, "timeout_s": round(timeout),
                 "error": None, "results": {}, "log": f"logs/stage{number}_{name}.log"}
        if abort:
            entry["error"] = abort
        elif timeout < MIN_STAGE_S:
            entry["error"] = f"out of time: {left:.0f} s of the {deadline} s deadline left"
        else:
            print(f"[gpu_check] stage {number} {name} (guard {timeout:.0f} s) ...", flush=True)
            t0 = time.perf_counter()
            status, results, error = _run_stage(number, args, timeout, logs / f"stage{number}_{name}.log")
            entry.update(status=status, seconds=round(time.perf_counter() - t0, 2), results=results, error=error)
            print(f"[gpu_check] stage {number} {name}: {status} in {entry['seconds']:.1f} s"
                  + (f": {error}" if error else ""), flush=True)
            if number == 1 and status != "ok" and not args.smoke:
                abort = f"stage 1 failed ({error}): no GPU measurements without the GPU backend"
                print(f"[gpu_check] !!! {abort}", file=sys.stderr, flush=True)
        report["stages"][name] = entry
        report["elapsed_s"] = round(time.perf_counter() - started, 1)
        report["all_ok"] = all(e["status"] == "ok" for e in report["stages"].values())
        _write(report, out)
    print(f"[gpu_check] wrote {out} and {out.with_suffix('.md')} in {report['elapsed_s']:.0f} s; "
          f"{'all stages ok' if report['all_ok'] else 'SOME STAGES DID NOT SUCCEED'}", flush=True)
    return 0 if report["all_ok"] else 1


# ----------------------------------------------------------------------------------------------
# the Markdown section


def _gb(x) -> str:
    return "n/a" if x is None else f"{x / GB:.2f} GB"


def _num(x, fmt=".3g", unit="") -> str:
    return "n/a" if x is None else f"{x:{fmt}}{unit}"


def _summary(name: str, r: dict) -> str:
    """One cell: the stage's numbers with their units."""
    if not r:
        return ""
    if name == "backend":
        return (f"{r.get('backend')} / {r.get('device_kind')} x {r.get('device_count')}; usable "
                f"{_gb(r.get('bytes_limit'))}")
    if name == "import_order":
        return "; ".join(f"{k.replace('_', ' ')}: {'ok' if v.get('ok') else 'FAILED'} "
                         f"(imports {_num(v.get('import_s'), '.1f', ' s')}, jax {v.get('jax_device')}, "
                         f"torch {v.get('torch_device')})"
                         for k, v in r.items() if isinstance(v, dict))
    if name == "dlpack":
        parts = [f"{k}: zero-copy {'yes' if v.get('zero_copy') else 'NO'} (back: "
                 f"{'yes' if v.get('torch_to_jax_zero_copy') else 'NO'}), values "
                 f"{'equal' if v.get('values_equal') else 'DIFFER'}"
                 for k, v in r.items() if k in ("bfloat16", "float32")]
        if "big" in r:
            parts.append(f"{r['big']['bytes'] / 1e6:.0f} MB hand-over {1e3 * r['big']['seconds']:.3f} ms")
        return "; ".join(parts)
    if name == "logprobs_vs_hf":
        kernels = ", ".join(f"{k.removeprefix('max_abs_diff_')} {v:.2g}" for k, v in r.items()
                            if k.startswith("max_abs_diff_"))
        return (f"max abs diff {_num(r.get('max_abs_diff'), '.2g')} nats ({kernels}) over "
                f"{r.get('tokens_compared')} tokens; tolerance {r.get('tolerance')}")
    if name in ("update_1p5b", "reference_logprobs") and r.get("attention_fallback"):
        note = f"**attention: {r['attention_fallback']}** ({r.get('fused_error', '')[:160]}); "
        return note + _summary(name, {k: v for k, v in r.items() if k != "attention_fallback"})
    if name == "update_1p5b":
        mem = r.get("compiled_memory", {})
        return (f"attention {r.get('attention')}; compile {_num(r.get('compile_s'), '.1f', ' s')}; "
                f"step {_num(r.get('step_s'), '.3f', ' s')} "
                f"({_num(r.get('tokens_per_s'), ',.0f', ' tokens/s')}); MFU {_num(100 * r['mfu'] if r.get('mfu') else None, '.1f', '%')}; "
                f"compiled peak {_gb(mem.get('peak'))} (temps {_gb(mem.get('temp'))}); "
                f"peak in use {_gb(r.get('peak_bytes_in_use'))}")
    if name == "attention_layer":
        parts = [f"{k}: fwd+bwd {_num(r[k].get('fwd_bwd_ms'), '.2f', ' ms')}, temps "
                 f"{_gb(r[k].get('compiled_memory', {}).get('temp'))}" for k in ("einsum", "fused") if k in r]
        if "max_abs_diff" in r:
            parts.append(f"max abs diff {r['max_abs_diff']:.3g} (largest abs output {r['max_abs_output']:.3g})")
        return "; ".join(parts)
    if name == "reference_logprobs":
        return (f"{_num(r.get('seconds'), '.3f', ' s')} per pass, {_num(r.get('tokens_per_s'), ',.0f', ' tokens/s')} "
                f"(attention {r.get('attention')}); "
                f"compile {_num(r.get('compile_s'), '.1f', ' s')}; compiled peak "
                f"{_gb(r.get('compiled_memory', {}).get('peak'))}")
    if name == "jax_sampler":
        return (f"{_num(r.get('tokens_per_s'), ',.0f', ' tokens/s')} ({r.get('completions')} x {r.get('new_tokens')} "
                f"new tokens in {_num(r.get('seconds'), '.2f', ' s')}, "
                f"{_num(r.get('ms_per_decode_step'), '.1f', ' ms')}/step); first call {_num(r.get('first_call_s'), '.1f', ' s')}")
    return ""


def render_markdown(report: dict) -> str:
    stages = report.get("stages", {})
    backend = stages.get("backend", {}).get("results", {})
    versions = backend.get("versions", {})
    device = (f"{backend.get('device_kind', '?')} x {backend.get('device_count', '?')}"
              + (f" ({'; '.join(backend['nvidia_smi'])})" if backend.get("nvidia_smi") else ""))
    lines = ["## GPU check (`python scripts/gpu_check.py`)", ""]
    if report.get("smoke"):
        lines += ["**Smoke run** (`--smoke`): every stage at toy sizes on the CPU; these are not GPU numbers.", ""]
    lines += [f"Device: {device}. Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
              + f". Run {report.get('started_utc')}, {report.get('elapsed_s')} s in all"
              f" (deadline {report.get('deadline_s')} s); attention option `{report.get('attention')}`.", "",
              "| # | stage | status | s | result |", "|---|---|---|---|---|"]
    for name, e in stages.items():
        cell = _summary(name, e.get("results", {})).replace("|", "\\|")
        lines.append(f"| {e['number']} | {e['title']} | {e['status']} | {e['seconds']:.1f} | {cell} |")
    up = stages.get("update_1p5b", {}).get("results", {})
    if up.get("step_s"):
        mem = up.get("compiled_memory", {})
        lines += ["", f"Update ({up.get('params', 0) / 1e9:.3f} B parameters, {up.get('batch')} x ({up.get('prompt')} + "
                  f"{up.get('completion')}) in micro-batches of {up.get('micro_batch')}, {up.get('param_dtype')} masters, "
                  f"{up.get('compute_dtype')} compute, remat {up.get('remat')}, attention {up.get('attention')}, "
                  f"{up.get('loss_type')} beta {up.get('beta')}): compiled arguments {_gb(mem.get('argument'))}, "
                  f"outputs {_gb(mem.get('output'))}, donated {_gb(mem.get('alias'))}, temporaries "
                  f"{_gb(mem.get('temp'))}; step times {', '.join(f'{t:.3f}' for t in up.get('step_times_s', []))} s "
                  f"(first {up.get('warmup')} warm-up); {up.get('flops_per_step', 0) / 1e12:.1f} TFLOP per step = "
                  f"{_num(up.get('tflops_per_s'), '.1f', ' TFLOP/s')} of {H200_BF16_PEAK / 1e12:.0f} peak "
                  f"({up.get('flop_count', '')})."]
    at = stages.get("attention_layer", {}).get("results", {})
    if "einsum" in at and "fused" in at:
        rows = [[k, f"{at[k]['fwd_ms']:.2f}", f"{at[k]['fwd_bwd_ms']:.2f}", _gb(at[k]['compiled_memory'].get('temp')),
                 _gb(at[k]['compiled_memory'].get('peak')), f"{at[k]['compile_s']:.1f}"] for k in ("einsum", "fused")]
        lines += ["", f"One decoder layer, {at.get('batch')} x {at.get('length')} tokens, {at.get('heads')} q heads / "
                  f"{at.get('kv_heads')} kv heads x {at.get('head_dim')}, bf16 compute (fused = {at.get('fused_backend')}):",
                  "", "| kernel | fwd ms | fwd+bwd ms | temporaries | compiled peak | compile s |",
                  "|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
        if "max_abs_diff" in at:
            lines += ["", f"Largest abs(einsum - fused) of the layer output {at['max_abs_diff']:.3g} (largest abs output "
                      f"{at['max_abs_output']:.3g}); of the input gradient {at.get('max_abs_diff_grad_x', float('nan')):.3g} "
                      f"(largest {at.get('max_abs_grad_x', float('nan')):.3g}). Fused fwd+bwd "
                      f"{at.get('fused_speedup', float('nan')):.2f}x the einsum kernel's speed."]
    failed = [(e["number"], e["title"], e["status"], e["error"]) for e in stages.values() if e["status"] != "ok"]
    lines += [""]
    if failed:
        lines += ["Stages that did not succeed:", ""] + [f"- {n} {t}: **{s}**: {err}" for n, t, s, err in failed]
    else:
        lines += [f"All {len(stages)} stages succeeded."]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every stage at toy sizes on the CPU")
    parser.add_argument("--stages", help="comma list of stage numbers (default: all)")
    parser.add_argument("--out", help="a .json file or a folder (default $OUT/ or runs/gpu_check/)")
    parser.add_argument("--deadline", type=float, help="seconds for the whole run (default 460; smoke 300)")
    parser.add_argument("--attention", default="auto", choices=("auto", "einsum", "fused"),
                        help="the model's attention option in stages 5, 7, 8 (default auto: fused on GPU)")
    parser.add_argument("--update-batch", type=int, help="stage 5: completions per step (default 6)")
    parser.add_argument("--update-micro", type=int, help="stage 5: completions per micro-batch (default 6)")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the Markdown from this JSON")
    parser.add_argument("--benchmarks", action="store_true", help="with --render: also into BENCHMARKS.md")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        sys.exit(run_worker(args))
    if args.render:
        text = render_markdown(json.loads(Path(args.render).read_text()))
        Path(args.render).with_suffix(".md").write_text(text + "\n")
        if args.benchmarks:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import bench_common

            bench_common.write_section("gpu_check", text)
        print(text)
        return
    sys.exit(run_driver(args))


if __name__ == "__main__":
    main()
