"""The run configuration: typed dataclasses, read from YAML plus `--section.key value` overrides.

Validation is strict: an unknown key, a value of the wrong type or a value that a section rejects
stops the run before any work starts, with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from jgrpo.choices import check_choice
from jgrpo.config_help import all_keys, unknown_key_hint
from jgrpo.data import DATA_ORDERS, OPEN_RS_SYSTEM_PROMPT
from jgrpo.grading import GRADING_MODES
from jgrpo.grpo.config import LOSS_TYPES, SCALE_REWARDS, SCHEDULES, LossConfig, OptimizerConfig
from jgrpo.hub import first_line
from jgrpo.model import DTYPE_NAMES, parse_dtype
from jgrpo.model.attention import ATTENTION_IMPLEMENTATIONS
from jgrpo.rewards import REWARD_NAMES, RewardOptions
from jgrpo.sampling import ENGINES, LOGPROBS_MODES, WEIGHT_SYNC_MODES
from jgrpo.sampling.base import check_logprobs_mode


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key."""


EXPORT_HF_MODES = ("final", "every", "none")


def _at_least(section, minimum, *names) -> None:
    for name in names:
        if getattr(section, name) < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {getattr(section, name)}")


@dataclasses.dataclass(frozen=True)
class TinyModelConfig:
    """Architecture of the model a run builds for itself when `model.path` is empty."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    seed: int = 0  # initialisation seed of the tiny model

    def __post_init__(self):
        _at_least(self, 1, "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    # a Hugging Face Qwen2/Qwen3/Llama folder, or a Hub id (org/name[@revision], through the HF cache); null:
    # build `tiny` into the run folder
    path: str | None = None
    param_dtype: str = "float32"  # the trained (master) weights
    compute_dtype: str = "float32"  # matmuls, the frozen reference and vLLM's weights
    remat: bool = False  # recompute each layer's activations in the backward pass (less memory)
    # fused: jax.nn.dot_product_attention (cuDNN's flash attention on GPUs) in the training forward
    # and log-prob passes; einsum: scores materialised, the reference path. auto: fused on GPUs,
    # einsum elsewhere (faster on CPUs).
    attention: str = "auto"
    tiny: TinyModelConfig = TinyModelConfig()

    def __post_init__(self):
        check_choice("attention", self.attention, ATTENTION_IMPLEMENTATIONS)
        for name in ("param_dtype", "compute_dtype"):
            try:
                parse_dtype(getattr(self, name))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    # "arithmetic" (the built-in toy task), a .jsonl/.json/.csv/.parquet file, a dataset folder
    # (save_to_disk, or a Hub-style repository), "bundled:deepscaler_math", or a Hugging Face dataset
    # name (e.g. knoveleng/open-rs; with HF_HUB_OFFLINE=1 only the local caches are read).
    source: str = "arithmetic"
    subset: str | None = None  # a Hub dataset's subset (its config name); null: its default or only one
    split: str = "train"  # also datasets' slices, e.g. "train[:1000]"
    problem_column: str = "problem"  # the question the prompt is built from
    answer_column: str = "answer"  # the final answer, graded by accuracy/cosine
    solution_column: str | None = "solution"  # a worked solution (open-rs grades against it)
    drop_missing_answers: bool = False  # skip rows without an answer instead of stopping
    tokenizer: str | None = None  # null: the model folder's own tokenizer
    system_prompt: str | None = OPEN_RS_SYSTEM_PROMPT  # null: no system message
    # The paper's generation prompts: the tokenizer's BOS on top of the chat template's (TRL gave
    # vLLM the templated text), so the sampler sees BOS twice; the training forward sees one, as in
    # TRL. Off: one BOS everywhere, as the template writes it.
    double_bos: bool = False
    max_prompt_length: int = 512  # prompt tokens the training forward keeps (left-truncated)
    # The prompts' order: jgrpo (numpy, seeded by train.seed and the epoch) or trl (TRL 0.16's
    # torch.randperm with train.seed: the paper's order, step for step; needs torch).
    order: str = "jgrpo"
    arithmetic_max_operand: int = 9  # the toy task: a + b with 0 <= a, b <= this

    def __post_init__(self):
        check_choice("order", self.order, DATA_ORDERS)
        _at_least(self, 1, "max_prompt_length")
        _at_least(self, 0, "arithmetic_max_operand")


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    engine: str = "jax"  # the native JAX sampler, or vLLM in this process
    num_generations: int = 6  # completions per prompt (GRPO's group)
    # > 0: GRPO compares different completions of one prompt, and greedy decoding makes them equal.
    temperature: float = 0.7
    top_p: float = 1.0  # nucleus sampling; 1.0: off
    top_k: int = 0  # 0: off
    max_completion_length: int = 3584  # new tokens per completion
    # The distribution the sampler's log-probs describe (jgrpo.sampling.LOGPROBS_MODES): "raw" is the
    # model's softmax before temperature and top-k/top-p, "processed" the one tokens were drawn from.
    logprobs_mode: str = "raw"
    # (vLLM) Share of the rollout GPU vLLM takes (weights + KV cache). null: 0.7 (open-rs) on a GPU
    # of its own; on the CPU a KV cache for 16 full-length sequences (vLLM's CPU build reads this
    # share as one of the node's RAM and refuses to start when that much is not free). A GPU that
    # vLLM shares with JAX (devices.trainer_gpus == rollout_gpus) needs a value: JAX gets the rest.
    gpu_memory_utilization: float | None = None
    # (vLLM) Longest prompt + completion vLLM holds. null: data.max_prompt_length +
    # max_completion_length; checked against the model's max_position_embeddings.
    max_model_len: int | None = None
    enforce_eager: bool = False  # (vLLM) no CUDA graphs: faster start, slower generation
    enable_prefix_caching: bool = True  # (vLLM) reuse the KV cache of a prompt's shared prefix
    weight_sync: str = "memory"  # (vLLM) memory: DLPack, no host copy on GPUs; folder: safetensors files
    sync_folder: str | None = None  # (vLLM) for weight_sync folder; null: <train.output_dir>/vllm_weights

    def __post_init__(self):
        check_choice("engine", self.engine, ENGINES)
        check_logprobs_mode(self.logprobs_mode)
        check_choice("weight_sync", self.weight_sync, WEIGHT_SYNC_MODES)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}: GRPO needs different completions "
                             "of one prompt, and greedy decoding makes every group's rewards equal")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        _at_least(self, 0, "top_k")
        _at_least(self, 1, "max_completion_length")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization < 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1), got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")


@dataclasses.dataclass(frozen=True)
class RewardsConfig:
    funcs: tuple[str, ...] = ("format", "accuracy")  # built-in names or module:function import paths
    # one per func; null: 1.0 each (TRL's default), as are a config file's weights when rewards.funcs
    # is changed on the command line without rewards.weights (they were the file's funcs' weights)
    weights: tuple[float, ...] | None = None
    options: RewardOptions = RewardOptions()

    def __post_init__(self):
        if not self.funcs:
            raise ValueError("funcs is empty: name at least one reward function")
        if self.weights is None:
            object.__setattr__(self, "weights", (1.0,) * len(self.funcs))
        if len(self.funcs) != len(self.weights):
            raise ValueError(f"{len(self.funcs)} reward funcs but {len(self.weights)} weights "
                             "(null weights: 1.0 each)")
        if not all(math.isfinite(w) for w in self.weights):
            raise ValueError(f"weights must be finite numbers, got {list(self.weights)}")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int = 1  # pure data parallelism
    fsdp: int = -1  # data parallelism with sharded weights and optimizer state; -1: all remaining devices
    tp: int = 1  # tensor parallelism

    def __post_init__(self):
        for name in ("data", "fsdp", "tp"):
            if getattr(self, name) < 1 and getattr(self, name) != -1:
                raise ValueError(f"{name} must be >= 1 or -1 (the remaining devices), got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "runs/run"  # metrics, checkpoints, exports and plots of the run
    max_steps: int = 500  # GRPO steps (each: generate, reward, update); the schedule spans them
    prompts_per_step: int = 12  # prompts per step; completions = this x rollout.num_generations
    seed: int = 42  # data order and sampling
    save_steps: int = 50  # an Orbax checkpoint every this many steps (and at the last)
    keep_checkpoints: int = 3  # the newest this many are kept
    # JAX's persistent compilation cache, so a rerun of the same shapes skips compiling. "auto":
    # JAX_COMPILATION_CACHE_DIR when set, else $XDG_CACHE_HOME/jgrpo/jax (~/.cache/jgrpo/jax);
    # a folder; or null to compile every run afresh (JAX_COMPILATION_CACHE_DIR then ignored).
    compilation_cache: str | None = "auto"
    export_hf: str = "final"  # Hugging Face folders next to the Orbax checkpoints: at the end, at each save, or none
    # Updates skipped in a row for a non-finite loss, gradient or reward (the state stays the last good
    # one) before the run stops.
    max_nonfinite_steps: int = 3
    mesh: MeshConfig = MeshConfig()

    def __post_init__(self):
        check_choice("export_hf", self.export_hf, EXPORT_HF_MODES)
        _at_least(self, 1, "max_steps", "prompts_per_step", "save_steps", "keep_checkpoints", "max_nonfinite_steps")


@dataclasses.dataclass(frozen=True)
class DevicesConfig:
    """GPU layout (jgrpo.devices): which GPUs train and which generate. Off on CPU."""

    gpu_layout: bool = False  # apply the layout below (GPUs only)
    trainer_gpus: tuple[int, ...] = (0, 1, 2)  # GPU ids JAX trains on
    rollout_gpus: tuple[int, ...] = (3,)  # GPU ids that generate; the trainer's own: colocated
    jax_memory_fraction: float = 0.9  # share of each GPU JAX may take when it shares none with vLLM

    def __post_init__(self):
        if min(self.trainer_gpus + self.rollout_gpus, default=0) < 0:
            raise ValueError("GPU ids must be >= 0")
        if not 0 < self.jax_memory_fraction <= 1:
            raise ValueError(f"jax_memory_fraction must be in (0, 1], got {self.jax_memory_fraction}")


@dataclasses.dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = True  # TensorBoard events in <output_dir>/tensorboard
    wandb: bool = False  # Weights & Biases (needs wandb installed and logged in)
    wandb_project: str = "jgrpo"
    completions_per_step: int = 2  # sample completions written to completions.jsonl
    plots: bool = True  # PNG curves in <output_dir>/plots at the end

    def __post_init__(self):
        _at_least(self, 0, "completions_per_step")


# The allowed values of the keys that have a fixed set, for --help.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.param_dtype": DTYPE_NAMES,
    "model.compute_dtype": DTYPE_NAMES,
    "model.attention": ATTENTION_IMPLEMENTATIONS,
    "rollout.engine": ENGINES,
    "rollout.logprobs_mode": LOGPROBS_MODES,
    "rollout.weight_sync": WEIGHT_SYNC_MODES,
    "data.order": DATA_ORDERS,
    "rewards.funcs": (*REWARD_NAMES, "module:function"),
    "rewards.options.grading.mode": GRADING_MODES,
    "loss.loss_type": LOSS_TYPES,
    "loss.scale_rewards": SCALE_REWARDS,
    "optim.schedule": SCHEDULES,
    "train.export_hf": EXPORT_HF_MODES,
}

# Keys of the library sections that the run derives from other sections instead of reading them.
DERIVED = {
    "loss.num_generations": "rollout.num_generations",
    "loss.max_completion_length": "rollout.max_completion_length",
    "optim.total_steps": "train.max_steps x loss.num_iterations",  # the schedule counts optimizer updates
}


def _derived(rollout: RolloutConfig, train: TrainConfig, num_iterations: int) -> dict[str, Any]:
    return {"loss.num_generations": rollout.num_generations,
            "loss.max_completion_length": rollout.max_completion_length,
            "optim.total_steps": train.max_steps * num_iterations}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    rollout: RolloutConfig = RolloutConfig()
    rewards: RewardsConfig = RewardsConfig()
    loss: LossConfig = LossConfig()
    optim: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    devices: DevicesConfig = DevicesConfig()
    log: LogConfig = LogConfig()

    def __post_init__(self):
        # Resolve the derived keys so every section is self-consistent.
        d = _derived(self.rollout, self.train, self.loss.num_iterations)
        object.__setattr__(self, "loss", dataclasses.replace(
            self.loss, num_generations=d["loss.num_generations"],
            max_completion_length=d["loss.max_completion_length"]))
        object.__setattr__(self, "optim", dataclasses.replace(self.optim, total_steps=d["optim.total_steps"]))
        # Checks that span sections, so a run fails here rather than after its first generation.
        completions = self.train.prompts_per_step * self.rollout.num_generations
        if self.rollout.num_generations < 2:
            raise ValueError("rollout.num_generations must be >= 2: advantages compare completions of one prompt")
        if completions % self.loss.micro_batch_size:
            raise ValueError(f"loss.micro_batch_size {self.loss.micro_batch_size} does not divide the "
                             f"{completions} completions of a step (train.prompts_per_step x rollout.num_generations)")
        if self.data.max_prompt_length < 1 or self.rollout.max_completion_length < 1:
            raise ValueError("data.max_prompt_length and rollout.max_completion_length must be >= 1")
        if self.loss.importance_sampling_cap is not None:
            _check_sampler_matches_loss(self.rollout, self.loss)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in DERIVED:
            section, name = key.split(".")
            d[section].pop(name)
        return _plain(d)


def _check_sampler_matches_loss(rollout: RolloutConfig, loss: LossConfig) -> None:
    """The importance-sampling correction divides the policy's probability (logits / loss.temperature)
    by the sampler's: both must describe the same distribution, or the ratio measures the mismatch."""
    if rollout.logprobs_mode == "raw" and loss.temperature != 1.0:
        raise ValueError(f"loss.importance_sampling_cap with rollout.logprobs_mode raw (log-probs before "
                         f"temperature) needs loss.temperature 1.0, got {loss.temperature}; or set "
                         "rollout.logprobs_mode processed")
    if rollout.logprobs_mode == "processed" and (loss.temperature != rollout.temperature or rollout.top_p < 1.0
                                                 or rollout.top_k):
        raise ValueError(f"loss.importance_sampling_cap with rollout.logprobs_mode processed needs loss.temperature "
                         f"= rollout.temperature ({loss.temperature} vs {rollout.temperature}) and no top-p/top-k "
                         "filtering (the loss does not filter)")


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _coerce(value: Any, typ: Any, key: str, derived_ok: bool = False) -> Any:
    """`value` as type `typ`; strings from the command line are parsed as YAML scalars first."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(typ)
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key {key}: got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}: expected a list, got {value!r}")
        (item,) = typing.get_args(typ)[:1]
        return tuple(_coerce(v, item, key) for v in value)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a section (mapping), got {value!r}")
        return build(typ, value, key + ".", derived_ok)
    if typ is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-6 as a string
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"config key {key}: unsupported type {typ}")
    raise ConfigError(f"config key {key}: expected {typ.__name__}, got {value!r}")


def build(cls, values: dict[str, Any], prefix: str = "", derived_ok: bool = False):
    """Builds dataclass `cls` from a nested mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = prefix + key
        if full in DERIVED and not derived_ok:
            raise ConfigError(f"config key {full} is not settable: it follows {DERIVED[full]}")
        if key not in names:
            while isinstance(value, dict) and value:  # a mistyped section: name a whole key under it
                inner, value = next(iter(value.items()))
                full += f".{inner}"
            settable = [k for k in all_keys(RunConfig()) if k not in DERIVED]
            raise ConfigError(f"unknown config key {full!r}: {unknown_key_hint(full, settable)}")
        kwargs[key] = _coerce(value, hints[key], full, derived_ok)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        where = prefix.rstrip(".")
        raise ConfigError(f"config section {where}: {e}" if where else str(e)) from None


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    *sections, leaf = dotted.split(".")
    node = tree
    for s in sections:
        child = node.setdefault(s, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {dotted}: {s} is not a section")
        node = child
    node[leaf] = value


def _get_path(tree: dict, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def recipes_dir() -> Path:
    """The bundled recipes: conf/ beside the package in a source checkout; in an installed wheel,
    jgrpo/conf, where pyproject.toml installs conf/."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / "conf"
    return checkout if checkout.is_dir() else package / "conf"


def recipe_path(name_or_path: str | Path) -> Path:
    """A config file: a path as given, or the name of a bundled recipe (tiny, open_rs3, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = recipes_dir() / f"{path.name.removesuffix('.yaml')}.yaml"
    if bundled.is_file() and path.parent == Path("."):
        return bundled
    names = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
    raise ConfigError(f"config file not found: {name_or_path} (bundled recipes: {', '.join(names)})")


def load_config(path: str | Path | None, overrides: dict[str, str] | None = None) -> RunConfig:
    """RunConfig from a YAML file (or the defaults) and dotted overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = recipe_path(path)
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({first_line(e)})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    overrides = dict(overrides or {})
    if "rewards.funcs" in overrides and "rewards.weights" not in overrides:
        overrides["rewards.weights"] = "null"  # the file's weights were for the file's funcs
    for key, value in overrides.items():
        _set_path(tree, key, value)
    for key in DERIVED:
        if _get_path(tree, key) is not None:
            raise ConfigError(f"config key {key} is not settable: it follows {DERIVED[key]}")
    # Sections validate themselves on construction, so they must see the derived values already.
    rollout = build(RolloutConfig, tree.get("rollout", {}), "rollout.")
    train = build(TrainConfig, tree.get("train", {}), "train.")
    num_iterations = _coerce(_get_path(tree, "loss.num_iterations") or LossConfig.num_iterations, int,
                             "loss.num_iterations")
    for key, value in _derived(rollout, train, num_iterations).items():
        _set_path(tree, key, value)
    return build(RunConfig, tree, derived_ok=True)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Written under a temporary name and renamed, so a crash never leaves half a config."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
    tmp.replace(path)
