"""Which GPUs train and which generate, and the memory settings that let JAX and vLLM share one
process. JAX, torch and vLLM read these once, at start-up: call `apply_layout` before any of them
touches a device (before the first jax.devices(), array or model, and before importing torch).

The default is open-rs's layout on 4 x A40: GPUs 0-2 train, GPU 3 generates with vLLM.
- vLLM in-process uses torch's cuda:0, so the rollout GPUs are listed first in
  CUDA_VISIBLE_DEVICES and JAX is restricted to the ordinals after them (jax_cuda_visible_devices).
- When no GPU is shared, JAX may preallocate most of its GPUs as usual. When JAX and vLLM share a
  GPU, JAX allocates on demand (XLA_PYTHON_CLIENT_PREALLOCATE=false) and is capped below what
  vLLM's gpu_memory_utilization leaves, and vLLM must start before JAX's memory use grows.
- With the JAX sampler the rollout GPUs are JAX devices too: `split_devices` gives the trainer's
  and the sampler's devices for their meshes.
- GPU ids count the GPUs this process may see: the entries of a CUDA_VISIBLE_DEVICES the user set,
  else every GPU the NVIDIA driver lists. An id beyond them is refused before anything starts.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

from jgrpo.choices import check_choice

_DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the NVIDIA driver knows
_FOUND_GPUS = "JGRPO_VISIBLE_GPUS"  # what apply_layout saw before it set CUDA_VISIBLE_DEVICES
DEFAULT_VLLM_GPU_MEMORY_UTILIZATION = 0.7  # open-rs's share of a GPU that vLLM has to itself


@dataclasses.dataclass(frozen=True)
class DeviceLayout:
    trainer_gpus: tuple[int, ...] = (0, 1, 2)  # physical GPU ids
    rollout_gpus: tuple[int, ...] = (3,)  # may equal trainer_gpus: colocated
    rollout_engine: Literal["vllm", "jax"] = "vllm"
    vllm_gpu_memory_utilization: float = DEFAULT_VLLM_GPU_MEMORY_UTILIZATION  # weights + KV cache
    jax_memory_fraction: float = 0.9  # share of a GPU JAX may use when it shares none with vLLM
    headroom: float = 0.05  # left free on a shared GPU for CUDA contexts and fragmentation

    def __post_init__(self):
        if not self.trainer_gpus or not self.rollout_gpus:
            raise ValueError("DeviceLayout needs at least one trainer GPU and one rollout GPU")
        overlap = set(self.trainer_gpus) & set(self.rollout_gpus)
        if overlap and set(self.trainer_gpus) != set(self.rollout_gpus):
            raise ValueError("rollout GPUs must be either disjoint from the trainer GPUs or the same GPUs")
        check_choice("rollout_engine", self.rollout_engine, ("vllm", "jax"))

    @property
    def colocated(self) -> bool:
        return set(self.trainer_gpus) == set(self.rollout_gpus)

    def check_gpus_exist(self, visible: list[str]) -> None:
        """ValueError naming the configured GPU ids that `visible` (see `visible_gpus`) lacks."""
        named = set(self.trainer_gpus + self.rollout_gpus)
        missing = sorted(i for i in named if not 0 <= i < len(visible))
        if missing:
            seen = f"{len(visible)} GPU{'s' if len(visible) != 1 else ''}" if visible else "no GPU"
            hints = (["on one GPU use conf/open_rs3_1gpu.yaml"] if len(named) > 1 else []) + \
                (["on a CPU set devices.gpu_layout false"] if not visible else [])
            raise ValueError(f"devices.trainer_gpus {list(self.trainer_gpus)} / rollout_gpus {list(self.rollout_gpus)} "
                             f"name GPU {', '.join(map(str, missing))}, but this process sees {seen} (CUDA_VISIBLE_DEVICES or the "
                             f"NVIDIA driver); {', '.join(hints)}")

    def environment(self, visible: list[str] | None = None) -> dict[str, str]:
        """The environment variables this layout needs; `visible` maps the layout's GPU ids to
        CUDA_VISIBLE_DEVICES entries (default: the ids themselves)."""
        env = {"OMP_WAIT_POLICY": "PASSIVE"}  # spinning OpenMP threads slow JAX + torch in one process 4x
        if self.colocated:
            order = self.trainer_gpus
        elif self.rollout_engine == "vllm":
            order = self.rollout_gpus + self.trainer_gpus
        else:
            order = self.trainer_gpus + self.rollout_gpus
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) if visible is None else visible[i] for i in order)
        if self.rollout_engine == "vllm":
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-memory weight sync needs vLLM in this process
        if self.colocated and self.rollout_engine == "vllm":
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{1.0 - self.vllm_gpu_memory_utilization - self.headroom:.3f}"
        else:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{self.jax_memory_fraction:.3f}"
        return env

    def jax_visible_devices(self) -> str:
        """CUDA ordinals (after CUDA_VISIBLE_DEVICES) JAX may use."""
        if self.rollout_engine == "vllm" and not self.colocated:
            first = len(self.rollout_gpus)
            return ",".join(str(first + i) for i in range(len(self.trainer_gpus)))
        return "all"


def visible_gpus(environ=os.environ, driver_gpus: Path = _DRIVER_GPUS) -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries: those an earlier
    `apply_layout` found (it reorders CUDA_VISIBLE_DEVICES), else the user's list when set, else one
    per GPU the NVIDIA driver lists (none on a machine without the driver)."""
    if environ.get(_FOUND_GPUS) is not None:
        return [g for g in environ[_FOUND_GPUS].split(",") if g]
    if environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [g.strip() for g in environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    return [str(i) for i in range(len(list(driver_gpus.iterdir())))] if driver_gpus.is_dir() else []


def apply_layout(layout: DeviceLayout, environ=os.environ) -> dict[str, str]:
    """Checks the layout's GPUs exist, then sets its environment and JAX's visible GPUs; returns
    what it set."""
    import jax

    visible = visible_gpus(environ)
    layout.check_gpus_exist(visible)
    env = {**layout.environment(visible), _FOUND_GPUS: ",".join(visible)}
    environ.update(env)
    jax.config.update("jax_cuda_visible_devices", layout.jax_visible_devices())
    return env


def split_devices(layout: DeviceLayout, devices=None):
    """(trainer devices, JAX sampler devices) after `apply_layout`; the sampler's list is empty
    when vLLM generates, and the same devices as the trainer's when colocated."""
    import jax

    devices = list(jax.devices() if devices is None else devices)
    if layout.rollout_engine == "vllm":
        return devices, []
    if layout.colocated:
        return devices, devices
    n = len(layout.trainer_gpus)
    return devices[:n], devices[n:]
