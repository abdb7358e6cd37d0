"""CPU test harness: JAX sees 4 fake CPU devices so sharding is exercised on one machine."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads slow JAX + torch/vLLM 4x
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
