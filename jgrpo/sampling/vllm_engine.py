"""vLLM as a rollout engine, in this process, with weight sync from the trainer's parameters.

vLLM runs in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0): the in-memory sync hands it host tensors
(views of the JAX buffers where no transpose is needed), which cannot cross a process boundary.
Token ids go in and out; vLLM's tokenizer is never started, and texts are decoded by
`decode_texts`, the same as the JAX engine.

Sampling follows the JAX engine: each completion is its own request (vLLM refuses n > 1 when
greedy), seeded per row from (seed, call number, row); it stops only at the given EOS ids
(`ignore_eos`, so the config's EOS does not stop it unless listed); the stop token ends the
completion. vLLM's min_tokens also suppresses the config's EOS id when it is not listed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jgrpo.model import Qwen2ForCausalLM
from jgrpo.sampling.base import Completion, LogprobsMode, SamplingParams, check_logprobs_mode, decode_texts
from ports.hf_export import export_hf
from ports.hf_tensors import hf_tensor_infos, hf_tensors
from ports.safetensors_file import write_file

_VLLM_LOGPROBS_MODE = {"raw": "raw_logprobs", "processed": "processed_logprobs"}
_VLLM_DTYPE = {"bf16": "bfloat16", "fp32": "float32"}  # the project's short names; vLLM knows the long ones
_WEIGHTS_FILE = "model.safetensors"


def _as_torch(array: np.ndarray):
    """A torch tensor sharing the array's memory; bfloat16 goes through a uint16 view because
    neither torch nor DLPack knows ml_dtypes' bfloat16."""
    import torch

    if array.dtype.name == "bfloat16":
        return torch.from_dlpack(array.view(np.uint16)).view(torch.bfloat16)
    return torch.from_dlpack(array)


def _torch_tensors(model: Qwen2ForCausalLM):
    """The ports iterator as torch tensors. A tied model also sends lm_head.weight: without it,
    vLLM 0.32's reload puts the old head back (tests/test_ports_vllm.py)."""
    for name, array in hf_tensors(model, tied_lm_head=True):
        yield name, _as_torch(array)


def _write_weights(model: Qwen2ForCausalLM, folder: Path) -> None:
    """One safetensors file of what `_torch_tensors` sends, written a tensor at a time; other
    weight files are removed so vLLM reads only this one."""
    for old in [*folder.glob("*.safetensors"), *folder.glob("*.safetensors.index.json")]:
        old.unlink()
    infos = []
    for info in hf_tensor_infos(model):
        infos.append(info)
        if model.cfg.tie_word_embeddings and info.name == "model.embed_tokens.weight":
            infos.append(dataclasses.replace(info, name="lm_head.weight"))
    write_file(folder / _WEIGHTS_FILE, infos, hf_tensors(model, tied_lm_head=True))


class VllmEngine:
    """A `vllm.LLM` started on `model_path`, a HF Qwen2 folder. Settings not named here go to
    vllm.LLM through llm_kwargs."""

    def __init__(self, model_path: str | Path, *, eos_token_ids, tokenizer=None, dtype: str = "bfloat16",
                 gpu_memory_utilization: float = 0.7, max_model_len: int = 4608, enable_prefix_caching: bool = True,
                 enforce_eager: bool = False, logprobs_mode: LogprobsMode = "raw", sync_via: str = "memory",
                 sync_dir: str | Path = "/dev/shm/jgrpo-weights", seed: int = 0, **llm_kwargs):
        check_logprobs_mode(logprobs_mode)
        if sync_via not in ("memory", "folder"):
            raise ValueError(f"sync_via must be 'memory' or 'folder', got {sync_via!r}")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import vllm

        self._vllm = vllm
        self.eos_token_ids = [int(i) for i in eos_token_ids]
        self.tokenizer = tokenizer
        self.sync_via = sync_via
        self.sync_dir = Path(sync_dir)
        self.calls = 0  # generate calls so far: part of every request's seed
        self.llm = vllm.LLM(str(model_path), dtype=_VLLM_DTYPE.get(dtype, dtype),
                            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                            enable_prefix_caching=enable_prefix_caching, enforce_eager=enforce_eager,
                            logprobs_mode=_VLLM_LOGPROBS_MODE[logprobs_mode], skip_tokenizer_init=True,
                            seed=seed, **llm_kwargs)

    @classmethod
    def from_model(cls, model: Qwen2ForCausalLM, *, sync_dir: str | Path = "/dev/shm/jgrpo-weights",
                   dtype: str | None = None, **options) -> "VllmEngine":
        """Exports the model as a HF folder in sync_dir and starts vLLM on it. (Starting from random
        "dummy" weights would skip the write, but vLLM then refuses every later reload from a
        folder.) dtype defaults to the model's parameter dtype."""
        export_hf(model, model.cfg, sync_dir, overwrite=True)
        param_dtype = np.dtype(jax.tree.leaves(nnx.state(model, nnx.Param))[0].dtype).name
        return cls(sync_dir, sync_dir=sync_dir, dtype=dtype or param_dtype, **options)

    def sync_weights(self, model: Qwen2ForCausalLM, *, via: str | None = None) -> float:
        """Pushes the model's parameters into vLLM ("memory": ports' tensor iterator;
        "folder": a safetensors file in sync_dir) and drops the prefix cache, whose blocks hold
        keys and values computed with the old weights. Returns the seconds it took."""
        via = via or self.sync_via
        start = time.perf_counter()
        if via == "memory":
            if self._vllm.envs.VLLM_ENABLE_V1_MULTIPROCESSING:
                raise RuntimeError("in-memory weight sync needs VLLM_ENABLE_V1_MULTIPROCESSING=0 "
                                   "(vLLM in this process); use sync_via='folder' otherwise")
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": _torch_tensors(model)})
        elif via == "folder":
            _write_weights(model, self.sync_dir)
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.sync_dir)})
        else:
            raise ValueError(f"via must be 'memory' or 'folder', got {via!r}")
        self.llm.reset_prefix_cache()
        return time.perf_counter() - start

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
        outputs = self.llm.generate(requests, request_params, use_tqdm=False)
        samples = [out.outputs[0] for out in outputs]
        token_ids = [np.asarray(s.token_ids, np.int32) for s in samples]
        texts = decode_texts(self.tokenizer, token_ids)
        return [Completion(prompt_index=r // params.n, token_ids=token_ids[r],
                           logprobs=np.asarray([lp[t].logprob for lp, t in zip(s.logprobs, s.token_ids)], np.float32),
                           finish_reason="stop" if s.finish_reason == "stop" else "length", text=texts[r])
                for r, s in enumerate(samples)]
