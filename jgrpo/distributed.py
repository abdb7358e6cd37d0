"""Multi-host runs: one JAX process per host, one global mesh over every host's devices.

Each process runs the same program on the same data (the pipeline is deterministic from the seed),
so host arrays are identical everywhere and can become global arrays without communication; only
results that live sharded across hosts need gathering. Process 0 writes the run's files.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize_from_environment() -> bool:
    """Joins a multi-host run when JAX_COORDINATOR_ADDRESS is set (with JAX_NUM_PROCESSES and
    JAX_PROCESS_ID, or a cluster JAX detects by itself: SLURM, Open MPI, ...). Returns whether it did."""
    if "JAX_COORDINATOR_ADDRESS" not in os.environ:
        return False
    # CPU hosts need a collectives backend; GPUs ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    num = os.environ.get("JAX_NUM_PROCESSES")
    pid = os.environ.get("JAX_PROCESS_ID")
    jax.distributed.initialize(num_processes=None if num is None else int(num),
                               process_id=None if pid is None else int(pid))
    return True


def is_main_process() -> bool:
    return jax.process_index() == 0


def to_global(x: np.ndarray, sharding) -> jax.Array:
    """A host array that every process holds identically, as a global array with `sharding`."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x: jax.Array) -> np.ndarray:
    """The whole array on this host, gathering the shards other hosts hold."""
    if x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def broadcast_from_main(x: np.ndarray) -> np.ndarray:
    """Process 0's value of `x` on every process."""
    if jax.process_count() == 1:
        return x
    return np.asarray(multihost_utils.broadcast_one_to_all(x))


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on any of them."""
    if jax.process_count() == 1:
        return flag
    return bool(np.asarray(multihost_utils.process_allgather(np.array(flag))).any())


def barrier(name: str) -> None:
    """Waits until every process gets here (no-op in a single-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
