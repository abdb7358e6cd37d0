"""jgrpo: GRPO for small reasoning LLMs in JAX/Flax, a reimplementation of the open-rs recipe."""

import os

# jgrpo uses transformers for tokenizers and configs only: its "PyTorch was not found" advice at
# import is noise in a run without torch.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
