"""`python -m jgrpo.train [--config FILE] [--section.key value ...] [--resume]`

One GRPO step: prompts -> rollout engine -> rewards -> group advantages -> reference (and old)
log-probs -> jitted, sharded update -> weight sync -> metrics, checkpoint. With no arguments it
runs conf/tiny.yaml, the CPU default: a tiny Qwen2 learning single-digit addition from rewards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import signal
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from jgrpo.checkpoint import Checkpoints, model_card
from jgrpo.console import output_to
from jgrpo.config import CHOICES, DERIVED, ConfigError, RunConfig, load_config, save_config
from jgrpo.config_help import describe_keys
from jgrpo.data import ColumnMap, DatasetError, PromptBatcher, encode_prompts, load_examples, load_tokenizer
from jgrpo.devices import DEFAULT_VLLM_GPU_MEMORY_UTILIZATION, DeviceLayout, apply_layout, split_devices
from jgrpo.distributed import (any_process, barrier, broadcast_from_main, initialize_from_environment,
                               is_main_process, to_global, to_host)
from jgrpo.grpo import (RolloutBatch, group_advantages, init_train_state, make_logprob_fn, make_train_step,
                        schedule_extends)
from jgrpo.hub import first_line
from jgrpo.model import ConfigError as ModelConfigError
from jgrpo.model import DtypePolicy, Qwen2Config, ShardingError, batch_sharding, data_parallel_size, make_mesh
from jgrpo.plots import plot_run
from jgrpo.rewards import FINISH_REASON_COLUMN, TOKEN_LENGTHS_COLUMN, build_reward_fn
from jgrpo.run_log import RunLogger, read_metrics
from jgrpo.sampling import SamplingParams, WeightSync, make_engine, pow2_at_least, stop_token_ids
from jgrpo.tasks import arithmetic
from ports import CheckpointError
from ports.hf_export import export_hf
from ports.hf_load import load_hf_model
from ports.orbax_ckpt import abstract, read_meta
from ports.params import abstract_params

DEFAULT_CONFIG = "tiny"  # the bundled CPU default, conf/tiny.yaml
USAGE = "usage: python -m jgrpo.train [--config FILE] [--resume] [--section.key VALUE ...]"
HELP = f"""{USAGE}

GRPO training. With no arguments: the CPU default (conf/tiny.yaml), a tiny Qwen2 learning
single-digit addition from rewards. The paper's recipes: --config open_rs3 (or a path to a YAML file).

  --config FILE   a YAML config, or a bundled recipe's name: tiny (default), open_rs1, open_rs2, open_rs3,
                  open_rs3_1gpu, grpo_math
  --resume        continue the run in train.output_dir from its newest checkpoint
  --section.key VALUE (or --section.key=VALUE) overrides one key; lists as a,b or [a, b]; null for none

Keys, with their values in the config being loaded:"""


class SetupError(ValueError):
    """Something about the run's inputs or outputs that stops it before any work starts."""


class RunComplete(Exception):
    """--resume on a run that already reached train.max_steps: nothing to do."""


class RunFault(Exception):
    """A fault that stops a run after it started (RELIABILITY.md); the message names the step."""


class EngineFailed(RunFault):
    """The rollout engine raised. saved_as: the step to checkpoint before stopping (the state
    and data cursor as they were before the failed step), or None when it is already saved."""

    def __init__(self, message: str, saved_as: int | None):
        super().__init__(message)
        self.saved_as = saved_as


def parse_args(argv: list[str]) -> tuple[str, dict[str, str], bool, bool]:
    """(config file, overrides, resume, help)."""
    config, overrides, resume, show_help = None, {}, False, False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            show_help = True
            i += 1
            continue
        if arg == "--resume":
            resume = True
            i += 1
            continue
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; {USAGE}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise ConfigError(f"--{key} needs a value")
            value = argv[i + 1]
            i += 1
        if key == "config":
            config = value
        else:
            overrides[key] = value
        i += 1
    return config or DEFAULT_CONFIG, overrides, resume, show_help


def _left_pad(rows: list[list[int]], width: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(rows), width), pad, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    return ids, mask


def _right_pad(rows: list[np.ndarray], width: int, pad, dtype) -> tuple[np.ndarray, np.ndarray]:
    out = np.full((len(rows), width), pad, dtype)
    mask = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return out, mask


def completion_metrics(completions) -> dict[str, float]:
    """TRL's completion-length metrics: over all completions, and over those that ended with an
    EOS ("terminated"; 0 when none did)."""
    lengths = np.array([len(c.token_ids) for c in completions])
    done = np.array([len(c.token_ids) for c in completions if c.finish_reason == "stop"])
    out = {"completions/min_length": float(lengths.min()), "completions/max_length": float(lengths.max())}
    for name, fn in (("min", np.min), ("mean", np.mean), ("max", np.max)):
        out[f"completions/{name}_terminated_length"] = float(fn(done)) if done.size else 0.0
    return out


def os_reason(error: BaseException) -> str:
    """The operating system's reason inside a library's error (tensorstore reports a full disk as
    "... [os_error_code='28']"), else its first line."""
    code = re.search(r"os_error_code='(\d+)'", str(error))
    return os.strerror(int(code.group(1))) if code else first_line(error)


def _finite_or_none(x) -> float | None:
    """A reward for JSON: NaN (the function returned None) becomes null."""
    return float(x) if np.isfinite(x) else None


class Trainer:
    """Builds every stage from the config, checking all inputs before the first step."""

    def __init__(self, cfg: RunConfig, resume: bool, recipe: str | None = None):
        """recipe: the --config the run was started with, named in its model cards."""
        self.cfg = cfg
        self.recipe = recipe
        self.is_main = is_main_process()  # in a multi-host run, process 0 writes the run's files
        self.run_dir = Path(cfg.train.output_dir)
        self._started = time.perf_counter()
        # Everything that can be checked is checked before the first file is written.
        self._check_output_dir()
        # Made here only when the run has checkpoints already; a new run makes it once set up.
        self.checkpoints = (Checkpoints(self.run_dir / "checkpoints", cfg.train.keep_checkpoints)
                            if (self.run_dir / "checkpoints").is_dir() else None)
        latest = self.checkpoints.latest_step() if self.checkpoints else None
        if latest is not None and not resume:
            raise SetupError(f"{self.run_dir} already holds checkpoints (step {latest}): pass --resume to "
                             "continue that run, or choose another train.output_dir")
        if resume and latest is None:
            raise SetupError(f"--resume: {self.run_dir / 'checkpoints'} holds no checkpoint to resume from")
        if resume:
            latest, damaged = self.checkpoints.newest_intact()
            if latest is None:
                raise SetupError(f"--resume: no intact checkpoint in {self.run_dir / 'checkpoints'} ("
                                 + "; ".join(f"checkpoint {step}: {why}" for step, why in damaged) + ")")
            if latest >= cfg.train.max_steps:
                raise RunComplete(f"{self.run_dir} is complete: its last checkpoint is step {latest} of "
                                  f"train.max_steps {cfg.train.max_steps}; nothing to do")
            self._check_resumable(latest)
            self._set_aside(damaged, latest)
        if cfg.log.wandb:
            try:
                import wandb  # noqa: F401
            except ImportError:
                raise SetupError("log.wandb is true but wandb is not installed (pip install wandb)") from None
        if cfg.rollout.engine == "vllm" and jax.process_count() > 1:
            raise SetupError("rollout.engine vllm runs in one process; use the jax engine for multi-host runs")
        self._say(f"{'resuming' if resume else 'starting'} {self.run_dir}: loading the model's config and tokenizer"
                  + ("" if cfg.model.path else " (building the tiny model first)"))
        self.model_path = self._model_folder()
        self.model_cfg = Qwen2Config.from_json_file(self.model_path)
        try:
            self.tokenizer = load_tokenizer(cfg.data.tokenizer or self.model_path)
        except (OSError, ValueError) as e:  # transformers' way of saying the folder has no tokenizer
            raise SetupError(f"cannot load a tokenizer from {cfg.data.tokenizer or self.model_path}: "
                             f"{first_line(e)}") from None
        prompts = self._prompts()
        if len(prompts) < cfg.train.prompts_per_step:
            raise SetupError(f"the dataset has {len(prompts)} prompts, fewer than train.prompts_per_step "
                             f"{cfg.train.prompts_per_step}")
        if cfg.data.order == "trl" and importlib.util.find_spec("torch") is None:
            raise SetupError("data.order trl draws the order with torch.randperm: install torch, or use data.order jgrpo")
        self.batcher = PromptBatcher(prompts, cfg.train.prompts_per_step, cfg.rollout.num_generations,
                                     cfg.train.seed, cfg.data.max_prompt_length, cfg.data.order)
        self._check_gold_column(prompts)
        # data.double_bos: generation sees the tokenizer's BOS on top of the template's, as TRL's vLLM
        # did; the training forward does not, as TRL's did not.
        self._generation_prefix = [self.tokenizer.bos_token_id] if cfg.data.double_bos else []
        if cfg.data.double_bos and self.tokenizer.bos_token_id is None:
            raise SetupError("data.double_bos is true but the tokenizer has no BOS token")
        try:
            self.sampling = SamplingParams(
                n=cfg.rollout.num_generations, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                top_k=cfg.rollout.top_k, max_new_tokens=cfg.rollout.max_completion_length, seed=cfg.train.seed)
        except ValueError as e:
            raise SetupError(f"rollout: {e}") from None
        self.max_model_len = cfg.rollout.max_model_len or cfg.data.max_prompt_length + cfg.rollout.max_completion_length
        limit = self.model_cfg.max_position_embeddings
        if cfg.rollout.engine == "vllm" and self.max_model_len > limit:
            origin = ("rollout.max_model_len" if cfg.rollout.max_model_len else
                      "data.max_prompt_length + rollout.max_completion_length")
            raise SetupError(f"{origin} = {self.max_model_len} exceeds the model's max_position_embeddings {limit}")
        self._say(f"model {self.model_path}: {self.model_cfg.num_hidden_layers} layers, hidden "
                  f"{self.model_cfg.hidden_size}, vocab {self.model_cfg.vocab_size}; data {cfg.data.source}: "
                  f"{len(prompts)} prompts")
        try:
            self.reward_fn = build_reward_fn(cfg.rewards.funcs, cfg.rewards.weights, cfg.rewards.options)
        except ValueError as e:  # an unknown reward name or an import path that does not resolve
            raise SetupError(f"rewards.funcs: {e}") from None

        trainer_devices, sampler_devices = self._devices()
        try:
            self.mesh = make_mesh(cfg.train.mesh.data, cfg.train.mesh.fsdp, cfg.train.mesh.tp,
                                  devices=trainer_devices)
            # The JAX sampler gets a mesh of its own only when the layout gives it other GPUs.
            self.sampler_mesh = (make_mesh(fsdp=-1, devices=sampler_devices)
                                 if sampler_devices and sampler_devices != trainer_devices else None)
        except ValueError as e:
            raise SetupError(f"train.mesh: {e}") from None
        try:  # before anything starts: a mesh that would replicate a large weight
            abstract_params(self.model_cfg, mesh=self.mesh)
        except ShardingError as e:
            raise SetupError(f"train.mesh: {e}") from None
        dp = data_parallel_size(self.mesh)
        if cfg.loss.micro_batch_size % dp:
            raise SetupError(f"loss.micro_batch_size {cfg.loss.micro_batch_size} does not split over {dp} "
                             "data-parallel devices")
        try:
            self.eos_ids = stop_token_ids(self.model_path, self.tokenizer)
        except ValueError as e:
            raise SetupError(str(e)) from None
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        devices = self.mesh.devices.flat
        self._say(f"devices: {self.mesh.devices.size} x {devices[0].platform} "
                  f"(mesh {', '.join(f'{k} {v}' for k, v in self.mesh.shape.items())})")
        self.checkpoints = self.checkpoints or Checkpoints(self.run_dir / "checkpoints", cfg.train.keep_checkpoints)
        if cfg.rollout.engine == "vllm":
            # Before JAX allocates: on a GPU it shares with JAX, vLLM must find its share free. It
            # starts from model.path, so its weights already equal the model loaded below.
            from jgrpo.sampling.vllm_engine import VllmEngine

            self._say(f"starting vLLM (its output: {self.run_dir / 'vllm.log'})")
            self.engine = VllmEngine(self.model_path, eos_token_ids=self.eos_ids, tokenizer=self.tokenizer,
                                     **self._engine_options())
        policy = DtypePolicy.from_names(cfg.model.param_dtype, cfg.model.compute_dtype)
        self.model = load_hf_model(self.model_path, policy=policy, mesh=self.mesh, remat=cfg.model.remat,
                                   attention=cfg.model.attention)
        # The frozen reference is the starting checkpoint, so a resumed run reloads the same one. It
        # never trains, so it is stored in the compute dtype (bf16 halves its memory next to fp32 masters).
        ref_policy = DtypePolicy(policy.compute_dtype, policy.compute_dtype)
        self.ref_params = (nnx.state(load_hf_model(self.model_path, policy=ref_policy, mesh=self.mesh), nnx.Param)
                           if cfg.loss.beta > 0 else None)
        self.graphdef, self.state = init_train_state(self.model, cfg.optim, self.mesh)
        self._say(f"model loaded: {sum(x.size for x in jax.tree.leaves(self.state.params)) / 1e6:.1f}M parameters, "
                  f"{cfg.model.param_dtype} weights, {cfg.model.compute_dtype} compute"
                  + (", frozen reference" if self.ref_params is not None else ""))
        self.start_step = 0
        self.num_tokens = 0  # prompt + completion tokens of every step so far (TRL's num_tokens)
        self._skipped_in_a_row = 0  # updates skipped for a non-finite loss, gradient or reward
        self._sync_failure = None  # set by a step whose weight sync raised
        self._said_golds_unparseable = False
        if cfg.rollout.engine == "jax":
            self.engine = make_engine("jax", self.model, eos_token_ids=self.eos_ids, tokenizer=self.tokenizer,
                                      **self._engine_options())
        if resume:
            self._restore(latest)
            self._say(f"resumed from step {self.start_step}")
        self.step_fn = make_train_step(self.graphdef, self.state, cfg.loss, cfg.optim, self.mesh)
        self.logprob_fn = make_logprob_fn(self.graphdef, self.state.params, self.mesh,
                                          micro_batch_size=cfg.loss.micro_batch_size,
                                          temperature=cfg.loss.temperature, chunk_size=cfg.loss.logprob_chunk_size)
        if self.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        self.logger = RunLogger(self.run_dir, cfg.log, cfg.to_dict(), self.start_step, write=self.is_main)
        self._stop_signal = None

    # --- setup -------------------------------------------------------------------------------
    def _say(self, message: str) -> None:
        """One line per start-up stage, with the seconds since start, on stdout."""
        if self.is_main:
            print(f"[{time.perf_counter() - self._started:6.1f}s] {message}", flush=True)

    def _check_output_dir(self) -> None:
        """That the output folder exists and is writable, or can be made: without making it."""
        existing = self.run_dir.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise SetupError(f"output folder {self.run_dir} cannot be made: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise SetupError(f"output folder {self.run_dir} is not writable ({existing} is read-only)")

    def _model_folder(self) -> Path:
        cfg = self.cfg
        if cfg.model.path:  # a local folder, or a Hub id resolved through the Hugging Face cache
            from jgrpo.hub import HubError, resolve_model

            try:
                return resolve_model(cfg.model.path)
            except HubError as e:
                raise SetupError(f"model.path: {e}") from None
        if cfg.data.source != "arithmetic":
            raise SetupError("model.path is required unless data.source is 'arithmetic' (the built-in task)")
        path = self.run_dir / "initial_model"
        if self.is_main and not path.is_dir():
            t = cfg.model.tiny
            arithmetic.write_model_folder(path, arithmetic.model_config(
                t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads,
                t.num_key_value_heads), seed=t.seed)
        barrier("initial model written")
        return path

    def _prompts(self):
        d = self.cfg.data
        if d.source == "arithmetic":
            return arithmetic.encode(self.tokenizer, arithmetic.examples(d.arithmetic_max_operand))
        columns = ColumnMap(problem=d.problem_column, answer=d.answer_column, solution=d.solution_column)
        dataset = load_examples(d.source, columns, d.split, d.drop_missing_answers, subset=d.subset)
        return encode_prompts(dataset.examples, self.tokenizer, d.system_prompt)

    def _devices(self):
        backend = jax.default_backend()
        if not self.cfg.devices.gpu_layout:
            if backend in ("gpu", "cuda") and self.cfg.rollout.engine == "vllm":
                raise SetupError("rollout.engine vllm on GPUs needs devices.gpu_layout true: which GPUs train, which "
                                 "generate and how they share memory (see conf/open_rs3.yaml, open_rs3_1gpu.yaml)")
            return jax.devices(), []
        if backend not in ("gpu", "cuda"):
            raise SetupError(f"devices.gpu_layout is true but JAX runs on the {backend}: its CUDA plugin did not load "
                             "(install jgrpo[gpu], then check it with `python scripts/check_gpu_env.py --installed`); "
                             "to train on the CPU set devices.gpu_layout false")
        return split_devices(gpu_layout(self.cfg))

    def _engine_options(self) -> dict:
        r = self.cfg.rollout
        if r.engine == "jax":
            return {"pad_token_id": self.pad_id, "mesh": self.sampler_mesh, "logprobs_mode": r.logprobs_mode}
        memory_share = gpu_layout(self.cfg).vllm_gpu_memory_utilization if self.cfg.devices.gpu_layout else None
        return {"logprobs_mode": r.logprobs_mode, "gpu_memory_utilization": r.gpu_memory_utilization or memory_share,
                "max_model_len": self.max_model_len, "enforce_eager": r.enforce_eager,
                "enable_prefix_caching": r.enable_prefix_caching, "sync_via": r.weight_sync,
                "sync_dir": r.sync_folder or self.run_dir / "vllm_weights", "seed": self.cfg.train.seed,
                "dtype": self.cfg.model.compute_dtype, "log_file": self.run_dir / "vllm.log"}

    def _check_gold_column(self, prompts) -> None:
        """accuracy and cosine grade against a column every batch must have: check it now, not at the
        first step that lacks it."""
        if not {"accuracy", "cosine"} & set(self.cfg.rewards.funcs):
            return
        gold = self.cfg.rewards.options.accuracy.gold_column
        examples = [p.example for p in prompts]
        has = {"problem", "answer"} | ({"solution"} if all(e.solution is not None for e in examples) else set())
        if gold not in has:
            raise SetupError(f"rewards.options.accuracy.gold_column {gold!r} is not in every row of the dataset "
                             f"(columns: {', '.join(sorted(has))}); for a bare answer column set "
                             "gold_column: answer and normalize_gold: true")

    def _set_aside(self, damaged: list[tuple[int, str]], latest: int) -> None:
        """Damaged checkpoints newer than the one resumed are moved out of the way (the run will
        save those steps again), each with a warning."""
        if self.is_main:
            for step, why in damaged:
                aside = self.checkpoints.set_aside(step)
                print(f"warning: checkpoint {step} is damaged ({why}): moved to {aside}; resuming from checkpoint "
                      f"{latest}", file=sys.stderr)
        barrier("damaged checkpoints set aside")
        self.checkpoints.manager.reload()

    def _check_resumable(self, step: int) -> None:
        """That the run in run_dir can continue under this config: read from the checkpoint's
        metadata, before anything starts or is written."""
        saved, now = read_meta(self.checkpoints.directory / str(step))["config"], self.cfg.to_dict()
        for section in ("model", "data", "rollout", "rewards", "loss", "optim"):
            if saved[section] != now[section]:
                key = sorted(k for k in now[section] if saved[section].get(k) != now[section][k])[0]
                if key not in saved[section]:
                    raise SetupError(f"cannot resume: the run was saved by an older jgrpo without {section}.{key}; "
                                     "start a new run")
                raise SetupError(f"cannot resume: {section}.{key} differs from the run's saved config")
        saved_steps = saved["train"]["max_steps"]
        if saved_steps != self.cfg.train.max_steps and not schedule_extends(self.cfg.optim, saved_steps *
                                                                              self.cfg.loss.num_iterations):
            raise SetupError(f"cannot resume with train.max_steps {self.cfg.train.max_steps}: the run's "
                             f"{self.cfg.optim.schedule} learning-rate schedule spans its {saved_steps} steps; "
                             f"resume with train.max_steps {saved_steps}, or start a new run")

    def _restore(self, step: int) -> None:
        # The freshly initialised state has the shapes and shardings the restored one must have.
        self.state, meta = self.checkpoints.restore(step, abstract(self.state))
        try:
            self.batcher.load_state_dict(meta["data"])
        except ValueError as e:
            raise SetupError(str(e)) from None
        self.engine.calls = meta["sampler_calls"]
        self.num_tokens = meta["num_tokens"]
        self.start_step = meta["step"]
        nnx.update(self.model, self.state.params)
        self.engine.sync_weights(self.model)

    # --- one step -------------------------------------------------------------------------------
    def _rollout_batch(self, prompt_batch, completions, rewards) -> RolloutBatch:
        cfg = self.cfg
        g = cfg.rollout.num_generations
        prompt_rows = [ids for ids in prompt_batch.prompt_ids for _ in range(g)]
        p_width = min(pow2_at_least(max(map(len, prompt_rows)), 8), cfg.data.max_prompt_length)
        prompt_ids, prompt_mask = _left_pad(prompt_rows, p_width, self.pad_id)
        c_width = min(pow2_at_least(max(len(c.token_ids) for c in completions), 8),
                      cfg.rollout.max_completion_length)
        completion_ids, completion_mask = _right_pad([c.token_ids for c in completions], c_width, self.pad_id,
                                                      np.int32)
        sampler_logps, _ = _right_pad([c.logprobs for c in completions], c_width, 0.0, np.float32)
        advantages = group_advantages(rewards, g, cfg.loss.scale_rewards)
        return RolloutBatch(
            prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
            completion_mask=completion_mask, advantages=np.asarray(advantages),
            rewards=np.asarray(rewards, np.float32),
            truncated=np.array([c.finish_reason == "length" for c in completions]),
            sampler_logps=sampler_logps)

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        timings = {}
        start = time.perf_counter()
        cursor, calls = self.batcher.state_dict(), self.engine.calls
        prompt_batch = self.batcher.next_batch()
        try:
            completions = self.engine.generate([self._generation_prefix + list(p.token_ids)
                                                for p in prompt_batch.prompts], self.sampling)
        except Exception as e:  # vLLM's engine died, or the JAX sampler ran out of memory
            # Back to before this step, so its checkpoint resumes with this very batch.
            self.batcher.load_state_dict(cursor)
            self.engine.calls = calls
            already_saved = self.checkpoints.latest_step() == step
            raise EngineFailed(f"step {step + 1}: the rollout engine failed ({type(e).__name__}: {first_line(e)})",
                               saved_as=None if already_saved else step) from None
        timings["generate"] = time.perf_counter() - start

        t = time.perf_counter()
        # Besides the dataset's columns, rewards may read what only the rollout knows.
        columns = {**prompt_batch.columns(), TOKEN_LENGTHS_COLUMN: [len(c.token_ids) for c in completions],
                   FINISH_REASON_COLUMN: [c.finish_reason for c in completions]}
        rewards = self.reward_fn([c.text for c in completions], **columns)
        self._say_once_if_no_gold_parsed(step + 1, rewards.metrics, len(completions))
        # A grader deadline can pass on one host and not another: process 0's rewards are the batch's.
        total = broadcast_from_main(rewards.total)
        timings["reward"] = time.perf_counter() - t

        # Every process built the same host batch; as global arrays each device gets its rows.
        host_batch = self._rollout_batch(prompt_batch, completions, total)
        batch = jax.tree.map(lambda x: to_global(x, batch_sharding(self.mesh, x.ndim)), host_batch)
        t = time.perf_counter()
        logps_args = (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask)
        if self.ref_params is not None:
            batch = batch.replace(ref_logps=self.logprob_fn(self.ref_params, *logps_args))
        if cfg.loss.num_iterations > 1:
            batch = batch.replace(old_logps=self.logprob_fn(self.state.params, *logps_args))
        jax.block_until_ready(batch)
        timings["reference"] = time.perf_counter() - t

        t = time.perf_counter()
        for _ in range(cfg.loss.num_iterations):
            self.state, metrics = self.step_fn(self.state, batch)
        metrics = {k: float(to_host(v)) for k, v in metrics.items()}
        timings["update"] = time.perf_counter() - t

        nnx.update(self.model, self.state.params)
        try:
            sync = self.engine.sync_weights(self.model)
        except Exception as e:  # the update is done: the run logs this step, saves it and stops
            self._sync_failure = f"step {step + 1}: the weight sync failed ({type(e).__name__}: {first_line(e)})"
            sync = WeightSync(time.perf_counter() - t, 0)
        timings["sync"] = sync.seconds
        timings["step"] = time.perf_counter() - start

        metrics.update(rewards.metrics)
        metrics.update(completion_metrics(completions))
        metrics.update({f"timing/{k}": v for k, v in timings.items()})
        metrics["tokens_per_second"] = sum(len(c.token_ids) for c in completions) / timings["step"]
        self.num_tokens += sum(len(prompt_batch.prompts[c.prompt_index].token_ids) + len(c.token_ids)
                               for c in completions)
        metrics["num_tokens"] = self.num_tokens  # TRL's: prompt and completion tokens seen so far
        metrics["sync/bytes"] = sync.bytes
        names = list(rewards.per_function)
        self.logger.log_completions(step + 1, [  # numbered like metrics.jsonl: after the update
            {"prompt_id": prompt_batch.prompts[c.prompt_index].example.id,
             "prompt": prompt_batch.prompts[c.prompt_index].text, "completion": c.text,
             "reward": float(total[i]), "rewards": {n: _finite_or_none(rewards.per_function[n][i]) for n in names},
             "advantage": float(host_batch.advantages[i]), "finish_reason": c.finish_reason}
            for i, c in enumerate(completions)][::cfg.rollout.num_generations])  # one per prompt
        return metrics

    # --- the loop ---------------------------------------------------------------------------------
    def _on_signal(self, signum, _frame):
        self._stop_signal = signum

    def _stopping(self) -> bool:
        """Whether any process got a stop signal: all must leave the loop at the same step, since the
        checkpoint save that follows is collective."""
        return any_process(self._stop_signal is not None)

    def _save(self, step: int) -> None:
        # The recipe names the run in a model card; ports.convert reads it from here.
        meta = {"step": step, "data": self.batcher.state_dict(), "sampler_calls": self.engine.calls,
                "num_tokens": self.num_tokens, "config": self.cfg.to_dict(), "hf_config": self.model_cfg.to_hf_dict(),
                "recipe": self.recipe}
        try:
            if self.is_main:  # once per run, before the first checkpoint: what ports.convert needs besides meta
                self.checkpoints.save_tokenizer(self.cfg.data.tokenizer or self.model_path, self.tokenizer)
            # A failing save makes Orbax's writer threads print pages of tracebacks: into the log.
            with output_to(self.run_dir / "checkpoint.log"):
                try:
                    self.checkpoints.save(step, self.state, meta, write_manifest=self.is_main)
                except Exception:
                    # Orbax's failed writes leave asyncio futures and coroutines that asyncio and
                    # Python report when they are collected, at exit, after the run's own one line:
                    # the line says it all.
                    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
                    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
                    raise
        except Exception as e:  # a full disk, a folder gone: Orbax's own errors wrap the OSError
            raise RunFault(f"saving checkpoint {step} failed: {os_reason(e)}") from None
        if self.cfg.train.export_hf == "every":
            self._export(self.run_dir / "hf" / f"step_{step}", step)

    def _export(self, dst: Path, step: int) -> None:
        # Gathering is collective: every process takes part, process 0 writes.
        params = jax.tree.map(to_host, nnx.to_pure_dict(nnx.state(self.model, nnx.Param)))
        if self.is_main:
            tokenizer = self.checkpoints.save_tokenizer(self.cfg.data.tokenizer or self.model_path, self.tokenizer)
            card = model_card(step=step, model_type=self.model_cfg.model_type, config=self.cfg.to_dict(),
                              run_dir=self.run_dir, recipe=self.recipe)
            export_hf(params, self.model_cfg, dst, tokenizer=tokenizer, overwrite=True, model_card=card)

    def run(self) -> int:
        """0 when the run reached max_steps or stopped on a signal (resumable); 1 when a fault stopped
        it (RELIABILITY.md), with one line naming it and the checkpoint to resume from."""
        cfg = self.cfg.train
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self._on_signal)
        # The first step compiles every program (sampler, log-probs, update): say so on the bar.
        bar = tqdm(total=cfg.max_steps, initial=self.start_step, desc="grpo (compiling the first step)", unit="step",
                   dynamic_ncols=True, disable=not self.is_main)
        step, stopped, fault = self.start_step, False, None
        try:
            while step < cfg.max_steps and not stopped:
                metrics = self.train_step(step)
                bar.set_description("grpo", refresh=False)
                step += 1
                self.logger.log(step, metrics)
                bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics.get('kl', 0.0):.4f}",
                                tok_s=f"{metrics['tokens_per_second']:.0f}")
                bar.update(1)
                self._count_skipped_update(step, metrics)
                if self._sync_failure is not None:
                    raise EngineFailed(self._sync_failure, saved_as=step)
                stopped = self._stopping()
                if step % cfg.save_steps == 0 or step == cfg.max_steps or stopped:
                    self._save(step)
            if not stopped:
                if cfg.export_hf != "none":
                    self._export(self.run_dir / "hf" / "final", step)
                if self.cfg.log.plots and self.is_main:
                    plot_run(self.run_dir)
        except EngineFailed as e:
            fault = str(e)
            if e.saved_as is not None:
                try:
                    self._save(e.saved_as)
                except RunFault as save_fault:
                    fault += f"; {save_fault}"
        except RunFault as e:
            fault = str(e)
        except OSError as e:  # a full disk or a folder gone while writing logs or exports
            fault = f"after step {step}: writing the run's files failed: {first_line(e)}"
        finally:
            bar.close()
            with contextlib.suppress(OSError):  # a full disk fails the last flush too
                self.logger.close()
            self.reward_fn.close()
        if fault is not None:
            last = self.checkpoints.latest_step()
            resume = f"resume from checkpoint {last} with --resume" if last is not None else "no checkpoint was saved"
            print(f"error: {fault}; {resume}", file=sys.stderr)
            return 1
        if stopped:
            name = signal.Signals(self._stop_signal).name if self._stop_signal else "another process's signal"
            print(f"stopped by {name} after step {step}; resume with --resume", file=sys.stderr)
            return 0
        self.checkpoints.close()
        self._summary(step)
        return 0

    def _say_once_if_no_gold_parsed(self, step: int, reward_metrics: dict[str, float], completions: int) -> None:
        """A gold column the correctness test cannot read (a bare answer like "2" without
        normalize_gold) gives every completion unparseable_gold_reward, as open-rs did, and GRPO
        nothing to learn from: said once, at the first step where no gold of the batch parsed."""
        if self._said_golds_unparseable or not self.is_main:
            return
        for key, value in reward_metrics.items():
            if key.endswith("/gold_unparseable") and value == completions:
                self._said_golds_unparseable = True
                accuracy = self.cfg.rewards.options.accuracy
                tqdm.write(f"warning: step {step}: no gold answer of this step parsed ({key} {value:.0f} of "
                           f"{completions}), so each completion got unparseable_gold_reward "
                           f"{accuracy.unparseable_gold_reward}; check rewards.options.accuracy.gold_column "
                           f"({accuracy.gold_column!r}), or set rewards.options.accuracy.normalize_gold true for a "
                           "bare answer column", file=sys.stderr)
                return

    def _count_skipped_update(self, step: int, metrics: dict[str, float]) -> None:
        """An update skipped for a non-finite number (the jitted step keeps the last good state) is
        said; train.max_nonfinite_steps of them in a row stop the run."""
        if not metrics["update_skipped"]:
            self._skipped_in_a_row = 0
            return
        self._skipped_in_a_row += 1
        quantity = next(name for name, key in (("rewards", "reward"), ("loss", "loss"), ("gradients", "grad_norm"))
                        if not np.isfinite(metrics[key]))
        tqdm.write(f"step {step}: non-finite {quantity}: update skipped, the state is the last good one",
                   file=sys.stderr)
        if self._skipped_in_a_row >= self.cfg.train.max_nonfinite_steps:
            raise RunFault(f"step {step}: non-finite {quantity} in {self._skipped_in_a_row} steps in a row "
                           f"(train.max_nonfinite_steps {self.cfg.train.max_nonfinite_steps})")

    def _summary(self, step: int) -> None:
        if not self.is_main:
            return
        rewards = [row["reward"] for row in read_metrics(self.run_dir)]
        first, last = rewards[:10], rewards[-10:]
        lines = [f"done: step {step} of {self.cfg.train.max_steps} in "
                 f"{time.strftime('%H:%M:%S', time.gmtime(time.perf_counter() - self._started))}"]
        if rewards:
            lines.append(f"  mean reward: {np.mean(first):.3f} (first {len(first)} steps) -> "
                         f"{np.mean(last):.3f} (last {len(last)})")
        lines.append(f"  run:         {self.run_dir}  (metrics.jsonl, completions.jsonl, config.yaml)")
        lines.append(f"  checkpoints: {self.run_dir / 'checkpoints'} (step {self.checkpoints.latest_step()})")
        if self.cfg.train.export_hf != "none":
            lines.append(f"  hf export:   {self.run_dir / 'hf' / 'final'}")
        if self.cfg.log.plots:
            lines.append(f"  plots:       {self.run_dir / 'plots'}")
        print("\n".join(lines), flush=True)


def gpu_layout(cfg: RunConfig) -> DeviceLayout:
    d, share = cfg.devices, cfg.rollout.gpu_memory_utilization
    if share is None:
        if cfg.rollout.engine == "vllm" and set(d.trainer_gpus) == set(d.rollout_gpus):
            raise SetupError("vLLM shares its GPU with JAX (devices.trainer_gpus == rollout_gpus): set "
                             "rollout.gpu_memory_utilization, vLLM's share; JAX gets the rest (see "
                             "conf/open_rs3_1gpu.yaml)")
        share = DEFAULT_VLLM_GPU_MEMORY_UTILIZATION
    return DeviceLayout(trainer_gpus=d.trainer_gpus, rollout_gpus=d.rollout_gpus, rollout_engine=cfg.rollout.engine,
                        vllm_gpu_memory_utilization=share, jax_memory_fraction=d.jax_memory_fraction)


def enable_compilation_cache(setting: str | None, environ=os.environ) -> Path | None:
    """Points JAX's persistent compilation cache at the configured folder (see
    train.compilation_cache); returns it, or None when off."""
    if setting is None:
        jax.config.update("jax_enable_compilation_cache", False)  # also the one JAX_COMPILATION_CACHE_DIR set
        return None
    if setting == "auto":
        if environ.get("JAX_COMPILATION_CACHE_DIR"):
            return Path(environ["JAX_COMPILATION_CACHE_DIR"])  # JAX read it at import
        base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
        folder = base / "jgrpo" / "jax"
    else:
        folder = Path(setting).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        path, overrides, resume, show_help = parse_args(argv)
        cfg = load_config(path, overrides)
        if show_help:
            print(HELP + "\n".join(describe_keys(cfg, CHOICES, skip=set(DERIVED))))
            return 0
        if cfg.devices.gpu_layout:
            try:
                apply_layout(gpu_layout(cfg))  # before JAX, torch or vLLM touch a device
            except ValueError as e:
                raise SetupError(str(e)) from None
        enable_compilation_cache(cfg.train.compilation_cache)
        initialize_from_environment()  # a multi-host run: before anything touches a device
        # Orbax warns on every save that it found no OCDBT files to merge (ports saves without OCDBT).
        logging.getLogger("absl").setLevel(logging.ERROR)
        trainer = Trainer(cfg, resume, recipe=path)
    except (ConfigError, ModelConfigError, SetupError, DatasetError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunComplete as e:
        print(e)
        return 0
    return trainer.run()


if __name__ == "__main__":
    sys.exit(main())
