"""`python -m ports.convert`, run as a user runs it: in a subprocess."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from ports.convert import main
from tests.test_ports_roundtrip import assert_same_tensors, read_all, write_hf

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b"


def convert(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "ports.convert", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    write_hf(folder, "tied_bf16_sharded")
    return folder


def test_hf_to_orbax_to_hf_round_trip(hf_folder, tmp_path):
    to_orbax = convert("hf-to-orbax", hf_folder, tmp_path / "orbax")
    assert to_orbax.returncode == 0 and to_orbax.stderr == "", to_orbax.stderr
    assert to_orbax.stdout.startswith("hf-to-orbax: 38 tensors, ")
    to_hf = convert("orbax-to-hf", tmp_path / "orbax", tmp_path / "hf", "--tokenizer", TOKENIZER,
                    "--max-shard-size", "20KB")
    assert to_hf.returncode == 0 and to_hf.stderr == "", to_hf.stderr
    assert to_hf.stdout.startswith("orbax-to-hf: 38 tensors, ")
    assert_same_tensors(read_all(tmp_path / "hf"), read_all(hf_folder))
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "generation_config.json"):
        assert (tmp_path / "hf" / name).read_bytes() == (TOKENIZER / name).read_bytes(), name
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_dtype_option_casts_both_ways(hf_folder, tmp_path, capsys):
    assert main(["hf-to-orbax", str(hf_folder), str(tmp_path / "orbax"), "--dtype", "fp32"]) == 0
    assert main(["orbax-to-hf", str(tmp_path / "orbax"), str(tmp_path / "hf"), "--dtype", "bf16", "--no-tokenizer"]) == 0
    assert_same_tensors(read_all(tmp_path / "hf"), read_all(hf_folder))  # bf16 -> fp32 -> bf16 is exact
    assert main(["orbax-to-hf", str(tmp_path / "orbax"), str(tmp_path / "hf32"), "--no-tokenizer"]) == 0
    source = read_all(hf_folder)
    widened = {k: torch.from_numpy(v.view("uint16")).view(torch.bfloat16).float().numpy() for k, v in source.items()}
    assert_same_tensors(read_all(tmp_path / "hf32"), widened)
    assert capsys.readouterr().err == ""


def test_orbax_to_hf_finds_the_tokenizer_of_the_folder_hf_to_orbax_read(hf_folder, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(hf_folder, src)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "generation_config.json"):
        shutil.copyfile(TOKENIZER / name, src / name)
    assert main(["hf-to-orbax", str(src), str(tmp_path / "orbax")]) == 0
    assert main(["orbax-to-hf", str(tmp_path / "orbax"), str(tmp_path / "hf")]) == 0
    assert f"(tokenizer from {src})" in capsys.readouterr().out
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert len(tokenizer) > 150_000 and tokenizer.decode(tokenizer("3+4=")["input_ids"], skip_special_tokens=True) == "3+4="
    assert "# Qwen2 checkpoint" in (tmp_path / "hf" / "README.md").read_text()  # a card, though no run to describe
    # The source gone, nothing says where a tokenizer is: refused, naming both ways out.
    shutil.rmtree(src)
    assert main(["orbax-to-hf", str(tmp_path / "orbax"), str(tmp_path / "hf2")]) == 1
    err = capsys.readouterr().err
    assert "no tokenizer found" in err and "--tokenizer DIR" in err and "--no-tokenizer" in err
    assert not (tmp_path / "hf2").exists()


def test_help_lists_both_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "hf-to-orbax" in out and "orbax-to-hf" in out


@pytest.mark.parametrize("command, damage, message", [
    ("hf-to-orbax", lambda src, dst: (src / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: v for k, v in json.loads(
            (src / "model.safetensors.index.json").read_text())["weight_map"].items() if k != "model.norm.weight"}})),
     "model.norm.weight"),
    ("hf-to-orbax", lambda src, dst: next(src.glob("model-00002-*.safetensors")).write_bytes(b"\0" * 4),
     "model-00002-of-"),
    ("hf-to-orbax", lambda src, dst: (dst.mkdir(), (dst / "precious").write_text("x")),
     "destination exists: {dst} (pass --overwrite to replace it)"),
    ("orbax-to-hf", lambda src, dst: None, "no Orbax checkpoint"),
    ("hf-to-orbax", lambda src, dst: (src / "config.json").write_text(json.dumps(
        {**json.loads((src / "config.json").read_text()), "hidden_size": 128})), "model.embed_tokens.weight"),
])
def test_errors_are_one_line_and_leave_no_destination(hf_folder, tmp_path, command, damage, message, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for f in hf_folder.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    before = set(tmp_path.iterdir())
    damage(src, dst)
    existed = dst.exists()
    assert main([command, str(src), str(dst)]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.format(dst=dst) in lines[0], err
    assert out == ""
    if existed:
        assert [p.name for p in dst.iterdir()] == ["precious"]
    else:
        assert not dst.exists()
    assert set(tmp_path.iterdir()) - before <= {dst}  # no temporary folder left next to it


def test_error_exit_status_and_stderr_of_the_process(hf_folder, tmp_path):
    result = convert("orbax-to-hf", hf_folder, tmp_path / "missing_dst")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"error: no Orbax checkpoint with a 'meta' item at {hf_folder}\n"
    assert not (tmp_path / "missing_dst").exists()


@pytest.mark.parametrize("family", ["qwen3_tied", "llama3_untied"])
def test_round_trip_of_the_other_families(family, tmp_path):
    """Qwen3 (q/k norms, head_dim apart from hidden/heads) and Llama 3 (llama3 RoPE scaling) through
    both commands: the weights bit for bit, config.json the family's own, read back as the same."""
    from jgrpo.model import Qwen2Config
    from tests.tiny_models import FAMILY_CONFIGS, make_hf_model

    make_hf_model(tmp_path / "src", dtype=torch.bfloat16, **FAMILY_CONFIGS[family])
    steps = [("hf-to-orbax", "src", "orbax"), ("orbax-to-hf", "orbax", "hf", "--no-tokenizer")]
    for command, src, dst, *extra in steps:
        result = convert(command, tmp_path / src, tmp_path / dst, *extra)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    assert_same_tensors(read_all(tmp_path / "hf"), read_all(tmp_path / "src"))
    written = json.loads((tmp_path / "hf" / "config.json").read_text())
    source = json.loads((tmp_path / "src" / "config.json").read_text())
    for key in ("architectures", "model_type", "head_dim", "tie_word_embeddings"):
        assert written.get(key) == source.get(key), key
    assert Qwen2Config.from_hf_dict(written) == Qwen2Config.from_hf_dict(source)
