"""vLLM as a rollout engine, in this process, with weight sync from the trainer's parameters.

vLLM runs in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0): the in-memory sync hands it tensors
that share the JAX buffers through DLPack (cast to vLLM's dtype and put in torch's layout on the
device where the weights live; on GPUs nothing passes through the host), which cannot cross a
process boundary. Token ids go in and out; vLLM's tokenizer is never started, and texts are
decoded by `decode_texts`, the same as the JAX engine.

vLLM starts from a Hugging Face folder: the run's `model.path` (the step-0 weights), so nothing is
exported at start-up; `from_model` exports a compute-dtype folder only for a model that has none.

Sampling follows the JAX engine: each completion is its own request (vLLM refuses n > 1 when
greedy), seeded per row from (seed, call number, row); it stops only at the given EOS ids
(`ignore_eos`, so the config's EOS does not stop it unless listed); the stop token ends the
completion. vLLM's min_tokens also suppresses the config's EOS id when it is not listed.

With VLLM_ENABLE_V1_MULTIPROCESSING=1 (folder sync only) vLLM's engine runs in child processes,
and vLLM's client waits forever on one that died mid-call; so every call to vLLM is then watched,
and a death raises `EngineProcessDied` instead.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np

from jgrpo.choices import check_choice
from jgrpo.console import output_to
from jgrpo.devices import DEFAULT_VLLM_GPU_MEMORY_UTILIZATION
from jgrpo.model import Qwen2Config, Qwen2ForCausalLM, parse_dtype
from jgrpo.sampling.base import (WEIGHT_SYNC_MODES, Completion, LogprobsMode, SamplingParams, WeightSync,
                                 check_logprobs_mode, decode_texts)
from ports.hf_export import export_hf
from ports.hf_tensors import hf_device_tensors, hf_tensor_infos, hf_tensors
from ports.safetensors_file import write_file

_VLLM_LOGPROBS_MODE = {"raw": "raw_logprobs", "processed": "processed_logprobs"}
_WEIGHTS_FILE = "model.safetensors"
# On the CPU vLLM reads gpu_memory_utilization as a share of the node's RAM and refuses to start
# unless that much is free; instead its KV cache is sized for this many full-length sequences.
CPU_KV_CACHE_SEQUENCES = 16
CPU_KV_CACHE_MIN_BYTES = 64 * 2**20  # so a tiny model's whole batch still runs at once
_WATCH_INTERVAL_S = 0.5


class EngineProcessDied(RuntimeError):
    """A process vLLM started for its engine exited while a call to vLLM was waiting on it."""


def kv_cache_bytes_per_token(cfg: Qwen2Config, dtype) -> int:
    """Keys and values of every layer for one token."""
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * np.dtype(dtype).itemsize


def _write_weights(model: Qwen2ForCausalLM, folder: Path, dtype) -> int:
    """One safetensors file of what the memory sync sends, written a tensor at a time; other
    weight files are removed so vLLM reads only this one. Returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("*.safetensors"), *folder.glob("*.safetensors.index.json")]:
        old.unlink()
    infos = hf_tensor_infos(model, dtype=dtype, tied_lm_head=True)
    write_file(folder / _WEIGHTS_FILE, infos, hf_tensors(model, dtype=dtype, tied_lm_head=True))
    return sum(i.nbytes for i in infos)


def dlpack_tensors(model: Qwen2ForCausalLM, dtype, sizes: list[int]):
    """(HF name, torch tensor sharing a device buffer) for every weight, cast to `dtype`; appends
    each tensor's byte count to `sizes`. A tied model also sends lm_head.weight: without it, vLLM
    0.32's reload puts the old head back (tests/test_ports_vllm.py)."""
    import torch

    for name, array in hf_device_tensors(model, dtype=dtype, tied_lm_head=True):
        sizes.append(array.nbytes)
        tensor = torch.from_dlpack(array)
        yield name, tensor
        if tensor.is_cuda:
            # vLLM queued its copy of the tensor on torch's streams; JAX knows nothing of them and
            # may reuse the buffer (a temporary of the cast) or donate it once `array` is gone.
            for device in range(torch.cuda.device_count()):
                torch.cuda.synchronize(device)


class VllmEngine:
    """A `vllm.LLM` started on `model_path`, a HF folder of a supported family. Settings not named here go to
    vllm.LLM through llm_kwargs.

    gpu_memory_utilization None: 0.7 of a GPU (open-rs); on the CPU, a KV cache for
    CPU_KV_CACHE_SEQUENCES sequences of max_model_len tokens (VLLM_CPU_KVCACHE_SPACE overrides).
    A layout where vLLM shares its GPU with JAX must set it (jgrpo.devices).

    log_file: where vLLM's own output goes while it starts, reloads weights and generates (None: the
    console); errors still surface as exceptions."""

    def __init__(self, model_path: str | Path, *, eos_token_ids, tokenizer=None, dtype: str = "bfloat16",
                 gpu_memory_utilization: float | None = None, max_model_len: int = 4096,
                 enable_prefix_caching: bool = True, enforce_eager: bool = False, logprobs_mode: LogprobsMode = "raw",
                 sync_via: str = "memory", sync_dir: str | Path | None = None, seed: int = 0,
                 log_file: str | Path | None = None, **llm_kwargs):
        check_logprobs_mode(logprobs_mode)
        check_choice("sync_via", sync_via, WEIGHT_SYNC_MODES)
        if sync_via == "folder" and sync_dir is None:
            raise ValueError("sync_via='folder' needs a sync_dir to write the weights to")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.log_file = None if log_file is None else Path(log_file)
        with output_to(self.log_file):
            import vllm
            from vllm.platforms import current_platform

        self._vllm = vllm
        self.eos_token_ids = [int(i) for i in eos_token_ids]
        self.tokenizer = tokenizer
        self.dtype = np.dtype(parse_dtype(dtype))
        self.sync_via = sync_via
        self.sync_dir = None if sync_dir is None else Path(sync_dir)
        self.calls = 0  # generate calls so far: part of every request's seed
        memory = {"gpu_memory_utilization": gpu_memory_utilization}
        if gpu_memory_utilization is None:
            if not current_platform.is_cpu():
                memory["gpu_memory_utilization"] = DEFAULT_VLLM_GPU_MEMORY_UTILIZATION
            elif "VLLM_CPU_KVCACHE_SPACE" in os.environ:
                memory = {}
            else:
                per_token = kv_cache_bytes_per_token(Qwen2Config.from_json_file(model_path), self.dtype)
                memory = {"kv_cache_memory_bytes": max(per_token * max_model_len * CPU_KV_CACHE_SEQUENCES,
                                                       CPU_KV_CACHE_MIN_BYTES)}
        before = set(multiprocessing.active_children())
        with output_to(self.log_file):
            self.llm = vllm.LLM(str(model_path), dtype=self.dtype.name, max_model_len=max_model_len,
                                enable_prefix_caching=enable_prefix_caching, enforce_eager=enforce_eager,
                                logprobs_mode=_VLLM_LOGPROBS_MODE[logprobs_mode], skip_tokenizer_init=True,
                                seed=seed, **memory, **llm_kwargs)
        # The engine's processes, when vLLM runs it in child processes; none in-process.
        self._engine_processes = [p for p in multiprocessing.active_children() if p not in before]

    @classmethod
    def from_model(cls, model: Qwen2ForCausalLM, *, model_path: str | Path | None = None,
                   export_dir: str | Path | None = None, dtype: str | None = None, **options) -> "VllmEngine":
        """Starts vLLM on `model_path` (a HF folder of the model's architecture) or, without one, on
        a compute-dtype export of the model in export_dir; then syncs the model's current weights.
        dtype defaults to the model's compute dtype."""
        dtype = dtype or np.dtype(model.policy.compute_dtype).name
        if model_path is None:
            if export_dir is None:
                raise ValueError("VllmEngine.from_model needs model_path (a HF folder) or export_dir")
            export_hf(model, model.cfg, export_dir, dtype=parse_dtype(dtype), overwrite=True)
            model_path = export_dir
        engine = cls(model_path, dtype=dtype, **options)
        engine.sync_weights(model)
        return engine

    def sync_weights(self, model: Qwen2ForCausalLM, *, via: str | None = None) -> WeightSync:
        """Pushes the model's parameters, in vLLM's dtype, into vLLM ("memory": device tensors
        through DLPack; "folder": a safetensors file in sync_dir) and drops the prefix cache, whose
        blocks hold keys and values computed with the old weights."""
        via = via or self.sync_via
        check_choice("via", via, WEIGHT_SYNC_MODES)
        start = time.perf_counter()
        with output_to(self.log_file):
            moved = self._watched(self._reload, model, via)
            self._watched(self.llm.reset_prefix_cache)
        return WeightSync(time.perf_counter() - start, moved)

    def _watched(self, fn, *args, **kwargs):
        """fn(*args, **kwargs); while vLLM's engine runs in child processes, from a helper thread
        that this one watches, raising EngineProcessDied when one of them exits before fn returns."""
        if not self._engine_processes:
            return fn(*args, **kwargs)
        outcome = {}

        def call():
            try:
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as e:  # handed to the caller's thread below
                outcome["error"] = e

        thread = threading.Thread(target=call, name="vllm-call", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(_WATCH_INTERVAL_S)
            dead = [p for p in self._engine_processes if not p.is_alive()]
            if dead and thread.is_alive():
                raise EngineProcessDied(f"vLLM's engine process {dead[0].name} (pid {dead[0].pid}) died "
                                        f"(exit code {dead[0].exitcode})")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _reload(self, model: Qwen2ForCausalLM, via: str) -> int:
        if via == "memory":
            if self._vllm.envs.VLLM_ENABLE_V1_MULTIPROCESSING:
                raise RuntimeError("in-memory weight sync needs VLLM_ENABLE_V1_MULTIPROCESSING=0 "
                                   "(vLLM in this process); use sync_via='folder' otherwise")
            sizes = []
            self.llm.collective_rpc("reload_weights",
                                    kwargs={"weights_iterator": dlpack_tensors(model, self.dtype, sizes)})
            return sum(sizes)
        if self.sync_dir is None:
            raise ValueError("folder sync needs the engine's sync_dir")
        moved = _write_weights(model, self.sync_dir, self.dtype)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.sync_dir)})
        return moved

    def _request_params(self, params: SamplingParams, row: int):
        seed = int(np.random.SeedSequence([params.seed, self.calls, row]).generate_state(1)[0])
        return self._vllm.SamplingParams(
            n=1, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
            max_tokens=params.max_new_tokens, min_tokens=params.min_new_tokens, seed=seed, logprobs=0,
            stop_token_ids=self.eos_token_ids, ignore_eos=True, detokenize=False)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate needs at least one prompt and no empty prompt")
        requests = [{"prompt_token_ids": [int(t) for t in p]} for p in prompts for _ in range(params.n)]
        request_params = [self._request_params(params, row) for row in range(len(requests))]
        self.calls += 1
        with output_to(self.log_file):
            outputs = self._watched(self.llm.generate, requests, request_params, use_tqdm=False)
        samples = [out.outputs[0] for out in outputs]
        token_ids = [np.asarray(s.token_ids, np.int32) for s in samples]
        texts = decode_texts(self.tokenizer, token_ids)
        return [Completion(prompt_index=r // params.n, token_ids=token_ids[r],
                           logprobs=np.asarray([lp[t].logprob for lp, t in zip(s.logprobs, s.token_ids)], np.float32),
                           finish_reason="stop" if s.finish_reason == "stop" else "length", text=texts[r])
                for r, s in enumerate(samples)]
