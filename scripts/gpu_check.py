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
 6 attention_layer     fused attention's correctness where training uses it, then its speed. Checked:
                       a 2-layer model with the 1.5B config's heads (12 q / 2 kv x 128; vocab 4096),
                       fp32 parameters, bf16 compute, remat, 8 rows of [left pad | prompt | completion |
                       right pad] in 128 + 384, one of them padding only: fused (cuDNN on the GPU) vs
                       einsum logits at real positions and gradients of a loss over them within stated
                       tolerances, everything finite (also a loss over padded positions), a padding-
                       attended control outside them. Timed: einsum vs fused on one 1.5B decoder layer
                       at 6 x 4096, bf16: fwd+bwd time, compiled memory, largest output difference
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
    6: ("attention_layer", "fused vs einsum attention: padded rows checked, 1.5B layer timed at 6 x 4096"),
    7: ("reference_logprobs", "reference log-prob pass, 18 x (512 + 3584), bf16 params"),
    8: ("jax_sampler", "JAX sampler, 1.5B config, 12 prompts x 6"),
}
# Seconds each stage may take on the GPU (compile included); the deadline caps their sum.
GUARD_S = {1: 60, 2: 100, 3: 60, 4: 90, 5: 240, 6: 130, 7: 120, 8: 150}
SMOKE_GUARD_S = {1: 60, 2: 90, 3: 60, 4: 90, 5: 120, 6: 120, 7: 90, 8: 90}
MIN_STAGE_S = 15  # a stage with less time than this left is skipped
TORCH_STAGES = (2, 3, 4)  # share the GPU with torch: JAX allocates on demand there
PACKAGES = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt", "flax",
            "optax", "orbax-checkpoint", "torch", "transformers", "numpy", "ml_dtypes", "nvidia-cudnn-cu12",
            "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12")
# Stage 6's padded-rows check: (prompt, completion) real tokens per row of [left pad | prompt |
# completion | right pad] in a prompt width of 128 and a completion width of 384 (the smoke: 8 + 12).
# Full; left padding only; right padding only; both; no completion; one token; one completion token;
# padding only.
PADDED_ROWS = ((128, 384), (100, 384), (128, 200), (57, 131), (40, 0), (1, 0), (90, 1), (0, 0))
PADDED_ROWS_SMOKE = ((8, 12), (5, 12), (8, 7), (3, 4), (6, 0), (1, 0), (4, 1), (0, 0))
# Its tolerances, fused vs einsum, both bf16 compute on the same fp32 parameters. Logits: the largest
# |difference| at real positions over the RMS of the einsum logits there. Gradients: per parameter,
# ||fused - einsum|| / ||einsum|| (L2 over the whole array), the worst parameter; a parameter whose
# gradient norm is under GRAD_NORM_FLOOR x the largest one's is measured against that floor instead
# (the k_proj biases' gradient is zero in exact arithmetic, softmax ignoring a constant per query:
# what is left is rounding, ~3e-4 of the largest norm). Why these numbers: bf16 keeps 8 significant
# bits, and bf16 compute alone already moves this model's einsum logits by up to 0.066 x their RMS and
# its worst parameter gradient by 2.2% (relative L2) from the same model in fp32 compute (measured on
# the CPU at the GPU sizes below; the stage measures it again, as noise_floor). Two bf16 kernels can
# each be that far from fp32, so up to about twice that apart; the tolerances allow ~4x and ~6x the
# floor. The control, the einsum kernel with the left padding attended, is ~6.8 x RMS and ~110% off:
# 27x and 9x the tolerances, so a kernel that lets padding in, or mishandles the roll, the lengths or
# the causal mask, cannot pass.
PADDED_LOGITS_TOL = 0.25  # x the logits' RMS, the largest difference at a real position
PADDED_GRAD_TOL = 0.125  # relative L2, the worst parameter
GRAD_NORM_FLOOR = 1e-2


# ----------------------------------------------------------------------------------------------
# sizes: the GPU run and the CPU smoke run


def sizes(smoke: bool) -> dict:
    if smoke:
        return dict(update=dict(batch=6, micro=6, prompt=16, completion=48, warmup=1, steps=2),
                    layer=dict(batch=2, length=64, warmup=1, steps=3),
                    reference=dict(batch=18, micro=6, prompt=16, completion=48, warmup=1, steps=2),
                    sampler=dict(prompts=12, n=6, prompt_min=12, prompt_max=16, new_tokens=16),
                    logprobs=dict(batch=4, prompt=12, completion=20),
                    padded=dict(layers=2, vocab=512, prompt=8, completion=12, rows=PADDED_ROWS_SMOKE),
                    dlpack_big_elements=1 << 20)
    return dict(update=dict(batch=6, micro=6, prompt=512, completion=3584, warmup=1, steps=3),
                layer=dict(batch=6, length=4096, warmup=2, steps=5),
                reference=dict(batch=18, micro=6, prompt=512, completion=3584, warmup=1, steps=3),
                sampler=dict(prompts=12, n=6, prompt_min=480, prompt_max=512, new_tokens=512),
                logprobs=dict(batch=4, prompt=64, completion=192),
                padded=dict(layers=2, vocab=4096, prompt=128, completion=384, rows=PADDED_ROWS),
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


def _padded_rows_batch(rows, prompt_width: int, completion_width: int, vocab: int, seed: int = 0):
    """ids and mask [b, prompt_width + completion_width] of [left pad | prompt | completion | right pad]
    rows, int32; the loss weights (uniform in [0.5, 1.5]) on real positions whose next token is real."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = prompt_width + completion_width
    ids = np.zeros((len(rows), t), np.int32)
    mask = np.zeros((len(rows), t), np.int32)
    for i, (p, c) in enumerate(rows):
        real = slice(prompt_width - p, prompt_width + c)
        ids[i, real] = rng.integers(3, vocab, p + c)
        mask[i, real] = 1
    pairs = mask * np.roll(mask, -1, axis=1)
    pairs[:, -1] = 0
    weights = (pairs * rng.uniform(0.5, 1.5, mask.shape)).astype(np.float32)
    return ids, mask, weights


def _padded_model_check(rec: Recorder, args) -> str | None:
    """Fused vs einsum attention in a small full model on padded rows, as training runs it: fp32
    parameters, bf16 compute, remat as the recipe has it, rows [left pad | prompt | completion | right
    pad] mixed with one of padding only. Compares the logits at real positions and the gradient of a
    loss over them; checks that every logit and every gradient is finite, also the gradient of a loss
    over all positions (padding included). Records everything under `padded`; returns why it failed,
    or None."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jgrpo.config import load_config
    from jgrpo.model import DtypePolicy, Qwen2ForCausalLM

    s = args.sizes["padded"]
    base = model_config(args.smoke)
    cfg = dataclasses.replace(base, num_hidden_layers=s["layers"], vocab_size=s["vocab"], tie_word_embeddings=False)
    remat = load_config(RECIPE).model.remat
    P, C, rows = s["prompt"], s["completion"], [tuple(r) for r in s["rows"]]
    result = {"config": dict(layers=cfg.num_hidden_layers, hidden=cfg.hidden_size, heads=cfg.num_attention_heads,
                             kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
                             intermediate=cfg.intermediate_size, vocab=cfg.vocab_size),
              "prompt_width": P, "completion_width": C, "rows": [list(r) for r in rows],
              "param_dtype": "float32", "compute_dtype": "bfloat16", "remat": remat,
              "fused_backend": "cudnn" if jax.default_backend() in ("gpu", "cuda") else "xla",
              "loss": "weighted mean of -log p(next token) over real positions whose next token is real",
              "tolerances": {"logits_max_abs_diff_over_rms": PADDED_LOGITS_TOL,
                             "grads_worst_param_rel_l2": PADDED_GRAD_TOL, "grad_norm_floor": GRAD_NORM_FLOOR},
              "passed": False}
    rec.update(padded=result)

    def graphdef_for(attention: str, compute: str):
        policy = DtypePolicy.from_names("float32", compute)
        abstract = nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, policy=policy, remat=remat, attention=attention,
                                                           rngs=nnx.Rngs(0)))
        return nnx.split(abstract, nnx.Param)[0]

    # Random weights; biases and norm scales random too (as stage 4), so a mistake in either shows.
    model = Qwen2ForCausalLM(cfg, policy=DtypePolicy.from_names("float32", "bfloat16"), remat=remat,
                             attention="einsum", rngs=nnx.Rngs(0))
    perturb = np.random.default_rng(3)
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Param) and path and path[-1] in ("bias", "scale"):
            shape = node[...].shape
            value = perturb.normal(0.0, 0.1, shape) if path[-1] == "bias" else perturb.uniform(0.5, 1.5, shape)
            node[...] = jnp.asarray(value, jnp.float32)
    params = jax.device_put(nnx.split(model, nnx.Param)[1], jax.devices()[0])
    del model
    ids, mask, weights = _padded_rows_batch(rows, P, C, cfg.vocab_size)
    real = mask.astype(bool)
    # Control: the einsum kernel with the left padding marked real, i.e. the padding attended. RoPE
    # sees only relative positions, so the real tokens' shifted positions alone change nothing.
    leak = mask.copy()
    for i in range(len(rows)):
        if real[i].any():
            leak[i, :int(np.argmax(real[i]))] = 1
    result.update(batch=len(rows), length=P + C, real_tokens=int(real.sum()), loss_tokens=int((weights > 0).sum()))

    def loss(graphdef, params, ids, mask, weights):
        logits, _ = nnx.merge(graphdef, params)(ids, mask)
        logps = jax.nn.log_softmax(logits, axis=-1)
        token = jnp.take_along_axis(logps, jnp.roll(ids, -1, axis=1)[..., None], axis=-1)[..., 0]
        return -jnp.sum(token * weights) / jnp.sum(weights), logits

    def compiled_for(graphdef, precision=None):
        fn = jax.jit(jax.value_and_grad(lambda *a: loss(graphdef, *a), has_aux=True))
        with jax.default_matmul_precision(precision):  # None: the default; bf16 matmuls are bf16 either way
            start = time.perf_counter()
            out = fn.lower(params, ids, mask, weights).compile()
        return out, time.perf_counter() - start

    def run(compiled, m=mask, w=weights):
        (value, logits), grads = compiled(params, ids, m, w)
        return float(value), np.asarray(logits), grads

    grad_norm = jax.jit(lambda g: [jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)))) for x in jax.tree.leaves(g)])
    grad_diff = jax.jit(lambda a, b: [jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32))))
                                      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
    all_finite = jax.jit(lambda g: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)])))
    names = [jax.tree_util.keystr(path, simple=True, separator=".").removesuffix(".value")
             for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]

    compile_s = {}
    compiled = {}
    for name, attention, compute, precision in (("einsum", "einsum", "bfloat16", None),
                                                ("fused", "fused", "bfloat16", None),
                                                ("einsum_fp32", "einsum", "float32", "highest")):
        compiled[name], compile_s[name] = compiled_for(graphdef_for(attention, compute), precision)
    result["compile_s"] = compile_s
    rec.update(padded=result)
    loss_e, logits_e, grads_e = run(compiled["einsum"])
    loss_f, logits_f, grads_f = run(compiled["fused"])
    loss_32, logits_32, grads_32 = run(compiled["einsum_fp32"])
    loss_c, logits_c, grads_c = run(compiled["einsum"], m=leak)
    # Every position weighted: the backward through padded queries and keys gets real cotangents.
    loss_all, logits_all, grads_all = run(compiled["fused"], w=np.ones_like(weights))

    norms_e = [float(x) for x in grad_norm(grads_e)]
    floor = GRAD_NORM_FLOOR * max(norms_e)

    def compare(logits, grads, logits_ref=logits_e, grads_ref=grads_e, per_param=False) -> dict:
        """Logits: the largest |difference| at real positions, over the reference's RMS there.
        Gradients: per parameter ||grads - ref|| / max(||ref||, floor), the worst one and its name;
        and the same over all parameters together."""
        scale = float(np.sqrt(np.mean(np.square(logits_ref[real]))))
        max_abs = float(np.max(np.abs(logits[real] - logits_ref[real])))
        diffs = [float(x) for x in grad_diff(grads, grads_ref)]
        norms = [float(x) for x in grad_norm(grads_ref)]
        rel = [d / max(n, floor) for d, n in zip(diffs, norms)]
        worst = int(np.argmax(rel))
        return {"logits_max_abs_diff": max_abs, "logits_max_abs_diff_over_rms": max_abs / scale,
                "logits_rel_l2": float(np.sqrt(np.mean(np.square(logits[real] - logits_ref[real])))) / scale,
                "grads_worst_param_rel_l2": rel[worst], "grads_worst_param": names[worst],
                "grads_global_rel_l2": math.sqrt(sum(d * d for d in diffs) / sum(n * n for n in norms)),
                **({"grads_per_param": {k: {"norm": n, "rel_l2": r} for k, n, r in zip(names, norms, rel)}}
                   if per_param else {})}

    fused = compare(logits_f, grads_f, per_param=True)
    finite = {"fused_logits_all_positions": bool(np.isfinite(logits_f).all()),
              "fused_grads": bool(all_finite(grads_f)),
              "fused_logits_loss_over_all_positions": bool(np.isfinite(logits_all).all()),
              "fused_grads_loss_over_all_positions": bool(all_finite(grads_all)),
              "fused_loss": math.isfinite(loss_f) and math.isfinite(loss_all),
              "einsum_logits_all_positions": bool(np.isfinite(logits_e).all()),
              "einsum_grads": bool(all_finite(grads_e))}
    logits_ok = fused["logits_max_abs_diff_over_rms"] <= PADDED_LOGITS_TOL
    grads_ok = fused["grads_worst_param_rel_l2"] <= PADDED_GRAD_TOL
    control = compare(logits_c, grads_c)
    discriminating = (control["logits_max_abs_diff_over_rms"] > PADDED_LOGITS_TOL
                      and control["grads_worst_param_rel_l2"] > PADDED_GRAD_TOL)
    result.update(
        fused_vs_einsum=dict(fused, logits_ok=logits_ok, grads_ok=grads_ok, loss_einsum=loss_e, loss_fused=loss_f),
        logits_rms=float(np.sqrt(np.mean(np.square(logits_e[real])))),
        logits_max_abs=float(np.max(np.abs(logits_e[real]))), grad_norm_max=max(norms_e), finite=finite,
        # How far bf16 compute alone moves things: each bf16 run against the einsum run in fp32
        # compute (matmul precision "highest"), measured the same way.
        noise_floor={"einsum_bf16_vs_fp32": compare(logits_e, grads_e, logits_32, grads_32),
                     "fused_bf16_vs_fp32": compare(logits_f, grads_f, logits_32, grads_32), "loss_fp32": loss_32},
        control=dict(control, discriminating=discriminating,
                     what="einsum with the left padding marked real (padding attended) vs einsum"))
    failures = []
    if not all(finite.values()):
        failures.append("non-finite: " + ", ".join(k for k, v in finite.items() if not v))
    if not logits_ok:
        failures.append(f"logits differ by {fused['logits_max_abs_diff_over_rms']:.3g} x their RMS > "
                        f"{PADDED_LOGITS_TOL:g}")
    if not grads_ok:
        failures.append(f"gradient of {fused['grads_worst_param']} differs by {fused['grads_worst_param_rel_l2']:.3g} "
                        f"(relative L2) > {PADDED_GRAD_TOL:g}")
    if not discriminating:
        failures.append("the control (padding attended) stays within the tolerances: the check cannot tell")
    result["passed"] = not failures
    rec.update(padded=result)
    return "; ".join(failures) or None


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
    # Correctness first (small and quick), so a guard that runs out during the timings below keeps it;
    # its failure, or an error in it (cuDNN refusing these shapes), fails the stage after the timings.
    try:
        padded_failure = _padded_model_check(rec, args)
    except Exception as e:  # noqa: BLE001 - recorded, raised after the timings
        traceback.print_exc()
        padded_failure = " ".join(f"{type(e).__name__}: {e}".split())[:400]
        rec.update(padded=dict(rec.data.get("padded", {}), passed=False, error=padded_failure))
    print(f"padded rows: {'passed' if padded_failure is None else 'FAILED: ' + padded_failure}", flush=True)
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
    if padded_failure is not None:
        raise AssertionError(f"padded rows, fused vs einsum: {padded_failure}")


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


def _padded_summary(pad: dict) -> str:
    """Stage 6's padded-rows check in one line."""
    verdict = "passed" if pad.get("passed") else "**FAILED**"
    if "fused_vs_einsum" not in pad:
        return f"padded rows {verdict}" + (f" ({pad['error'][:160]})" if pad.get("error") else "")
    d, tol = pad["fused_vs_einsum"], pad.get("tolerances", {})
    finite = pad.get("finite", {})
    return (f"padded rows, fused ({pad.get('fused_backend')}) vs einsum, bf16: {verdict}; logits max diff "
            f"{d['logits_max_abs_diff_over_rms']:.3g} x RMS (tolerance {tol.get('logits_max_abs_diff_over_rms')}), "
            f"grads worst {d['grads_worst_param_rel_l2']:.3g} rel. L2 (tolerance "
            f"{tol.get('grads_worst_param_rel_l2')}); {'all finite' if all(finite.values()) else 'NOT FINITE'}")


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
        pad = r.get("padded") or {}
        parts = [_padded_summary(pad)] if pad else []
        parts += [f"{k}: fwd+bwd {_num(r[k].get('fwd_bwd_ms'), '.2f', ' ms')}, temps "
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
    pad = at.get("padded") or {}
    if "fused_vs_einsum" in pad:
        c, d, tol = pad["config"], pad["fused_vs_einsum"], pad["tolerances"]
        floor, control = pad.get("noise_floor", {}), pad.get("control", {})
        e32, f32 = floor.get("einsum_bf16_vs_fp32", {}), floor.get("fused_bf16_vs_fp32", {})
        ok = lambda x: "ok" if x else "**FAILED**"  # noqa: E731
        lines += ["", f"Padded rows, fused attention ({pad.get('fused_backend')}) vs einsum: {c['layers']} layers, "
                  f"{c['heads']} q / {c['kv_heads']} kv heads x {c['head_dim']}, hidden {c['hidden']}, vocab "
                  f"{c['vocab']}, random weights; {pad['param_dtype']} parameters, {pad['compute_dtype']} compute, "
                  f"remat {pad['remat']}; {pad['batch']} rows of [left pad | prompt | completion | right pad] in "
                  f"{pad['prompt_width']} + {pad['completion_width']}, (prompt, completion) = "
                  f"{', '.join(f'({p}, {q})' for p, q in pad['rows'])}; {pad['real_tokens']} real tokens. "
                  f"**{'Passed' if pad['passed'] else 'FAILED'}.**", "",
                  "| measure | fused vs einsum | tolerance | bf16 einsum vs fp32 | bf16 fused vs fp32 | control |",
                  "|---|---|---|---|---|---|",
                  f"| logits: max abs diff at real positions / their RMS ({pad['logits_rms']:.3g}) | "
                  f"{d['logits_max_abs_diff_over_rms']:.3g} ({ok(d['logits_ok'])}) | {tol['logits_max_abs_diff_over_rms']} | "
                  f"{_num(e32.get('logits_max_abs_diff_over_rms'))} | {_num(f32.get('logits_max_abs_diff_over_rms'))} | "
                  f"{_num(control.get('logits_max_abs_diff_over_rms'))} |",
                  f"| gradients: worst parameter's relative L2 | {d['grads_worst_param_rel_l2']:.3g} "
                  f"({d['grads_worst_param']}, {ok(d['grads_ok'])}) | {tol['grads_worst_param_rel_l2']} | "
                  f"{_num(e32.get('grads_worst_param_rel_l2'))} | {_num(f32.get('grads_worst_param_rel_l2'))} | "
                  f"{_num(control.get('grads_worst_param_rel_l2'))} |",
                  f"| gradients: all parameters' relative L2 | {d['grads_global_rel_l2']:.3g} | | "
                  f"{_num(e32.get('grads_global_rel_l2'))} | {_num(f32.get('grads_global_rel_l2'))} | "
                  f"{_num(control.get('grads_global_rel_l2'))} |", "",
                  "Finite: " + ", ".join(f"{k.replace('_', ' ')} {ok(v)}" for k, v in pad['finite'].items())
                  + f". The control is {control.get('what', 'n/a')}; it must fall outside both tolerances "
                  f"({ok(control.get('discriminating'))})."]
    elif pad.get("error"):
        lines += ["", f"Padded rows, fused vs einsum: **FAILED**: {pad['error']}"]
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
