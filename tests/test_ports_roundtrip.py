"""HF -> Flax -> HF and HF -> Orbax -> HF reproduce every tensor bit for bit; the exported folder
loads in transformers with the same logits; the in-memory iterator is what the export writes.

Checkpoints are written by transformers and read back with the safetensors package: both are
independent of ports' own safetensors reader and writer."""

import json
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from jgrpo.model import DtypePolicy, make_mesh
from ports.hf_export import export_hf
from ports.hf_load import load_hf_model, load_hf_params
from ports.hf_tensors import hf_tensors
from ports.orbax_ckpt import restore_params, save_params
from ports.params import model_from_params
from ports.safetensors_file import TensorInfo, read_header, read_tensor, write_file
from tests.tiny_models import TINY_CONFIGS, left_padded_batch, make_hf_model

# (tiny config, dtype written by transformers, written sharded?)
CASES = {
    "untied_fp32_single": ("untied_2kv", torch.float32, False),
    "tied_bf16_sharded": ("tied_1kv", torch.bfloat16, True),
    "untied_bf16_single": ("untied_1kv_theta500", torch.bfloat16, False),
    "untied_fp16_sharded": ("untied_1kv_theta500", torch.float16, True),
}
TINY_SHARD = "20KB"  # forces several files even for these tiny models


def read_all(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="numpy") as f:
            out.update({name: f.get_tensor(name) for name in f.keys()})
    return out


def assert_same_tensors(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        assert got[name].tobytes() == want[name].tobytes(), name


def write_hf(folder: Path, case: str):
    config, dtype, sharded = CASES[case]
    hf = make_hf_model(folder, dtype=dtype, **TINY_CONFIGS[config])
    if sharded:  # re-save as transformers shards it, index included
        for f in folder.glob("model*.safetensors*"):
            f.unlink()
        hf.save_pretrained(folder, max_shard_size=TINY_SHARD)
        assert (folder / "model.safetensors.index.json").is_file()
    return hf


@pytest.fixture(scope="module", params=sorted(CASES))
def hf_folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    write_hf(folder, request.param)
    return folder


@pytest.mark.parametrize("max_shard_size", ["5GB", TINY_SHARD])
def test_hf_flax_hf_is_bit_exact(hf_folder, tmp_path, max_shard_size):
    cfg, params = load_hf_params(hf_folder, mesh=make_mesh(fsdp=2, tp=2))
    export_hf(params, cfg, tmp_path / "out", max_shard_size=max_shard_size)
    assert_same_tensors(read_all(tmp_path / "out"), read_all(hf_folder))
    single = (tmp_path / "out" / "model.safetensors").is_file()
    assert single == (max_shard_size == "5GB")
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file() == (not single)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    source = json.loads((hf_folder / "config.json").read_text())
    assert written["torch_dtype"] == source.get("dtype", source.get("torch_dtype"))
    assert written["tie_word_embeddings"] == source["tie_word_embeddings"]


def test_hf_orbax_hf_is_bit_exact_across_meshes(hf_folder, tmp_path):
    cfg, params = load_hf_params(hf_folder, mesh=make_mesh(fsdp=4))
    save_params(tmp_path / "orbax", params, cfg)
    cfg2, restored = restore_params(tmp_path / "orbax", mesh=make_mesh(fsdp=1, tp=4))
    assert cfg2 == cfg
    export_hf(restored, cfg2, tmp_path / "out", max_shard_size=TINY_SHARD)
    assert_same_tensors(read_all(tmp_path / "out"), read_all(hf_folder))


@pytest.mark.parametrize("config", ["untied_2kv", "tied_1kv"])
def test_exported_folder_loads_in_transformers_with_equal_logits(config, tmp_path):
    hf = make_hf_model(tmp_path / "src", seed=3, **TINY_CONFIGS[config])
    model = load_hf_model(tmp_path / "src")
    export_hf(model, model.cfg, tmp_path / "out", max_shard_size=TINY_SHARD)
    reloaded = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert reloaded.dtype == torch.float32
    assert reloaded.config.tie_word_embeddings == hf.config.tie_word_embeddings
    ids, mask = left_padded_batch([5, 9, 2], hf.config.vocab_size)
    with torch.no_grad():
        ref = reloaded(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    ours, _ = model(jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    real = mask.numpy().astype(bool)
    assert np.abs(np.asarray(ours)[real] - ref.numpy()[real]).max() <= 1e-4


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
def test_in_memory_iterator_yields_what_the_export_writes(hf_folder, tmp_path, dtype):
    cfg, params = load_hf_params(hf_folder, mesh=make_mesh(fsdp=4))
    export_hf(params, cfg, tmp_path / "out", dtype=dtype, max_shard_size=TINY_SHARD)
    pairs = list(hf_tensors(params, dtype=dtype))
    assert len({name for name, _ in pairs}) == len(pairs)
    assert_same_tensors(dict(pairs), read_all(tmp_path / "out"))
    assert ("lm_head.weight" in dict(pairs)) == (not cfg.tie_word_embeddings)
    with_head = dict(hf_tensors(params, dtype=dtype, tied_lm_head=True))
    assert with_head["lm_head.weight"].tobytes() == dict(pairs).get(
        "lm_head.weight", with_head["model.embed_tokens.weight"]).tobytes()
    if dtype is not None:  # the cast is the same round-to-nearest ml_dtypes does on the source
        source = read_all(hf_folder)
        for name, array in pairs:
            assert array.tobytes() == source[name].astype(ml_dtypes.bfloat16).tobytes(), name


def test_iterator_accepts_a_model_and_casts_on_load(tmp_path):
    make_hf_model(tmp_path / "src", **TINY_CONFIGS["untied_2kv"])
    model = load_hf_model(tmp_path / "src", policy=DtypePolicy(param_dtype=jnp.bfloat16))
    source = read_all(tmp_path / "src")
    got = dict(hf_tensors(model))
    assert_same_tensors(got, {k: v.astype(ml_dtypes.bfloat16) for k, v in source.items()})
    again = model_from_params(model.cfg, load_hf_params(tmp_path / "src")[1])
    assert_same_tensors(dict(hf_tensors(again)), source)


def test_safetensors_writer_and_reader_agree_with_the_package(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "bf16": rng.standard_normal((3, 5)).astype(ml_dtypes.bfloat16),
        "f16_transposed_view": rng.standard_normal((4, 6)).astype(np.float16).T,
        "f32_scalar": np.array(1.5, np.float32),
        "f64_empty": np.zeros((0, 3), np.float64),
        "i64": np.arange(7, dtype=np.int64),
    }
    infos = [TensorInfo(k, v.dtype, v.shape) for k, v in tensors.items()]
    write_file(tmp_path / "ours.safetensors", infos, iter(tensors.items()))
    assert_same_tensors(load_file(tmp_path / "ours.safetensors"), tensors)
    save_file({k: v.copy() for k, v in tensors.items()}, tmp_path / "theirs.safetensors")
    header = read_header(tmp_path / "theirs.safetensors")
    with open(tmp_path / "theirs.safetensors", "rb") as f:
        assert_same_tensors({k: read_tensor(f, info) for k, info in header.items()}, tensors)
