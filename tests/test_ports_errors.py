"""Bad checkpoints and destinations: each fails with one clear error naming the tensor or file,
and an export that fails leaves nothing at its destination. The CLI's side is in test_ports_cli."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jgrpo.model import ConfigError, make_mesh
from ports import CheckpointError
from ports.atomic import atomic_dir
from ports.hf_export import export_hf, parse_size
from ports.hf_load import load_hf_params
from tests.tiny_models import TINY_CONFIGS, make_hf_model

UP = "model.layers.0.mlp.up_proj.weight"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    make_hf_model(folder, **TINY_CONFIGS["untied_2kv"])
    return folder


@pytest.fixture
def bad(good, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(good, folder)
    return folder


def edit_tensors(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def split_into_two_files(folder):
    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    halves = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2:]}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, folder / file, metadata={"format": "pt"})
    (folder / "model.safetensors").unlink()
    weight_map = {n: file for file, part in halves.items() for n in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return weight_map


def truncate(path, nbytes):
    data = path.read_bytes()
    path.write_bytes(data[:nbytes])


CASES = {
    "missing tensor": (lambda f: edit_tensors(f, lambda t: t.pop(UP)), rf"missing tensor '{UP}'"),
    "unknown tensor": (lambda f: edit_tensors(f, lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq":
                                                                      np.ones(8, np.float32)})),
                       r"model\.safetensors: unexpected tensor 'model\.layers\.0\.self_attn\.rotary_emb\.inv_freq'"),
    "shape mismatch": (lambda f: edit_tensors(f, lambda t: t.update({UP: t[UP][:, :-1].copy()})),
                       rf"'{UP}' has shape \[128, 63\], config.json implies \[128, 64\]"),
    "integer tensor": (lambda f: edit_tensors(f, lambda t: t.update({UP: t[UP].astype(np.int32)})),
                       rf"'{UP}' has dtype int32"),
    "truncated data": (lambda f: truncate(f / "model.safetensors", -100), r"model\.safetensors: truncated"),
    "truncated header": (lambda f: truncate(f / "model.safetensors", 5), r"model\.safetensors: not a safetensors file"),
    "garbage header": (lambda f: (f / "model.safetensors").write_bytes((20).to_bytes(8, "little") + b"x" * 40),
                       r"model\.safetensors: corrupt safetensors header"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), r"no model\.safetensors or model\.safetensors\.index\.json"),
    "config: wider mlp": (lambda f: edit_config(f, intermediate_size=96), r"'model\.layers\.0\.mlp\.down_proj\.weight' has shape"),
    "config: fewer layers": (lambda f: edit_config(f, num_hidden_layers=1), r"unexpected tensor 'model\.layers\.1\."),
    "config: tied but untied weights": (lambda f: edit_config(f, tie_word_embeddings=True), None),
    "index: file missing": (lambda f: (split_into_two_files(f), (f / "b.safetensors").unlink()), r"b\.safetensors: file not found"),
    "index: tensor not in its file": (
        lambda f: (f / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
            **{k: "b.safetensors" if v == "a.safetensors" else "a.safetensors" for k, v in split_into_two_files(f).items()}}})),
        r"index\.json: tensor '.*' is not in [ab]\.safetensors"),
    "index: not json": (lambda f: (split_into_two_files(f), (f / "model.safetensors.index.json").write_text("{")),
                        r"index\.json: not a valid safetensors index"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_checkpoint_names_the_problem(bad, case):
    corrupt, message = CASES[case]
    corrupt(bad)
    if message is None:  # a tied config ignores a stored lm_head.weight, as transformers does
        cfg, params = load_hf_params(bad)
        assert cfg.tie_word_embeddings and "lm_head" not in params
        return
    with pytest.raises(CheckpointError, match=message) as info:
        load_hf_params(bad, mesh=make_mesh(fsdp=4))
    assert "\n" not in str(info.value)


def test_bad_config_is_a_config_error(bad):
    edit_config(bad, hidden_act="gelu")
    with pytest.raises(ConfigError, match="hidden_act"):
        load_hf_params(bad)
    with pytest.raises(CheckpointError, match="model folder not found"):
        load_hf_params(bad / "nope")


def test_export_refuses_an_existing_destination_and_overwrites_only_when_asked(good, tmp_path):
    cfg, params = load_hf_params(good)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="destination exists"):
        export_hf(params, cfg, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    export_hf(params, cfg, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failed_export_leaves_nothing(good, tmp_path):
    cfg, params = load_hf_params(good)
    wrong = type(cfg)(**{**cfg.__dict__, "vocab_size": cfg.vocab_size + 1})
    with pytest.raises(CheckpointError, match=r"'model\.embed_tokens\.weight' has shape"):
        export_hf(params, wrong, tmp_path / "out")
    with pytest.raises(CheckpointError, match="tokenizer folder not found"):
        export_hf(params, cfg, tmp_path / "out", tokenizer=tmp_path / "no_tokenizer")
    bf16_and_fp32 = {**params, "norm": {"scale": params["norm"]["scale"].astype("bfloat16")}}
    with pytest.raises(CheckpointError, match="mixed dtypes"):
        export_hf(bf16_and_fp32, cfg, tmp_path / "out")
    with pytest.raises(RuntimeError, match="disk full"), atomic_dir(tmp_path / "out") as tmp:
        tmp.mkdir()
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("1.5 MB") == 1_500_000
    assert parse_size(123) == 123
    for bad in ("", "5XB", "-1GB", "0"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
