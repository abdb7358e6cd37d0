"""Framework bridges: Hugging Face safetensors <-> Flax parameters <-> Orbax checkpoints.

safetensors_file  the file format, read and written one tensor at a time
qwen2_names       the one place that knows Hugging Face tensor names (Qwen2, Qwen3, Llama: one map)
params            a model's parameters as a plain nested dict (abstract, sharded, merged)
hf_load           HF folder -> Flax parameters / model
hf_tensors        Flax parameters -> (HF name, device or host array) pairs (vLLM weight sync, export)
hf_export         Flax parameters -> HF folder
orbax_ckpt        Orbax save/restore of any pytree plus a JSON metadata item
convert           `python -m ports.convert`: hf-to-orbax, orbax-to-hf
"""


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, corrupt or inconsistent with its config."""
