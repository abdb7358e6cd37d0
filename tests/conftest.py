"""CPU test harness: JAX sees 4 fake CPU devices so sharding is exercised on one machine."""

import os
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads slow JAX + torch/vLLM 4x
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The runs' persistent compilation cache in a folder of this session's own (JAX reads the variable
# at import, here and in every `python -m jgrpo.train` the tests start): no entry half-written by
# an earlier session's killed run can make a run print a warning, and nothing goes to ~/.cache.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jgrpo-tests-jax-cache-"))

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
