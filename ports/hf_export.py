"""Flax parameters -> a Hugging Face folder (Qwen2, Qwen3 or Llama) that transformers and vLLM load
as is.

config.json (the family's own, from the Qwen2Config, with the weights' dtype), generation_config.json,
the weights as one model.safetensors or as shards of at most `max_shard_size` with
model.safetensors.index.json, the tokenizer files when a tokenizer folder is given, and a model card
(README.md) when one is given. Tensors stream from device to file one at a time; the folder appears
at `dst` only once complete.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from jgrpo.model import Qwen2Config
from ports import CheckpointError
from ports.atomic import atomic_dir
from ports.hf_load import INDEX_FILE, SINGLE_FILE, Progress
from ports.hf_tensors import hf_tensor_infos, hf_tensors
from ports.params import check_params, param_tree, tree_dtype
from ports.safetensors_file import TensorInfo, write_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "chat_template.json", "tokenizer.model")
GENERATION_CONFIG = "generation_config.json"
MODEL_CARD = "README.md"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(size: int | str) -> int:
    """Bytes from 5000000, "5GB" (10^9, as Hugging Face counts) or "2GiB"."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", size)
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"not a size: {size!r} (examples: 5GB, 500MB, 2GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def plan_shards(infos: list[TensorInfo], max_bytes: int) -> list[list[TensorInfo]]:
    """Consecutive groups of at most max_bytes each; a tensor larger than that gets a file alone."""
    shards: list[list[TensorInfo]] = [[]]
    size = 0
    for info in infos:
        if shards[-1] and size + info.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(info)
        size += info.nbytes
    return shards


def _generation_config(cfg: Qwen2Config) -> dict:
    ids = {"bos_token_id": cfg.bos_token_id,
           "eos_token_id": list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple) else cfg.eos_token_id}
    return {k: v for k, v in ids.items() if v is not None}


def tokenizer_files(folder: str | Path) -> list[Path]:
    """The tokenizer's files, and its generation_config.json if it has one: that carries the
    model's sampling defaults, which a config built from token ids alone would lose."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"tokenizer folder not found: {folder}")
    files = [folder / f for f in TOKENIZER_FILES if (folder / f).is_file()]
    if not files:
        raise CheckpointError(f"{folder}: no tokenizer files (looked for {', '.join(TOKENIZER_FILES)})")
    generation = folder / GENERATION_CONFIG
    return files + ([generation] if generation.is_file() else [])


def export_hf(model_or_params, cfg: Qwen2Config, dst: str | Path, *, dtype=None, max_shard_size: int | str = "5GB",
              tokenizer: str | Path | None = None, overwrite: bool = False,
              progress: Progress | None = None, model_card=None) -> None:
    """Writes a HF folder at `dst`. dtype None keeps the parameters' dtype (which must be single).
    generation_config.json comes from the tokenizer folder if it has one, else from the config's
    bos/eos ids. model_card: a huggingface_hub ModelCard (or its text), written as README.md.
    progress(name, bytes) is called after each tensor is written."""
    tree = param_tree(model_or_params)
    check_params(tree, cfg)
    out_dtype = np.dtype(dtype) if dtype is not None else tree_dtype(tree)
    infos = hf_tensor_infos(tree, dtype=out_dtype)
    shards = plan_shards(infos, parse_size(max_shard_size))
    extra = tokenizer_files(tokenizer) if tokenizer is not None else []

    with atomic_dir(dst, overwrite=overwrite) as tmp:
        tmp.mkdir()
        tensors = hf_tensors(tree, dtype=out_dtype)
        if progress is not None:
            tensors = _with_progress(tensors, progress)
        names = [SINGLE_FILE] if len(shards) == 1 else [
            f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
        for file, shard in zip(names, shards):
            write_file(tmp / file, shard, tensors)
        if next(tensors, None) is not None:  # also lets the progress wrapper report the last tensor
            raise CheckpointError("more tensors than planned for the export")
        if len(shards) > 1:
            index = {"metadata": {"total_size": sum(i.nbytes for i in infos)},
                     "weight_map": {i.name: file for file, shard in zip(names, shards) for i in shard}}
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        (tmp / "config.json").write_text(json.dumps(cfg.to_hf_dict(torch_dtype=out_dtype.name), indent=2) + "\n")
        for file in extra:
            shutil.copyfile(file, tmp / file.name)
        if not (tmp / GENERATION_CONFIG).exists():
            (tmp / GENERATION_CONFIG).write_text(json.dumps(_generation_config(cfg), indent=2) + "\n")
        if model_card is not None:
            if isinstance(model_card, str):
                (tmp / MODEL_CARD).write_text(model_card)
            else:
                model_card.save(tmp / MODEL_CARD)


def _with_progress(tensors, progress):
    for name, array in tensors:
        yield name, array
        progress(name, array.nbytes)
