"""A training checkpoint (<run>/checkpoints/<step>, as `python -m jgrpo.train` writes it) converted
by `python -m ports.convert orbax-to-hf` into a folder transformers loads: the same logits as
jgrpo for that checkpoint, the run's tokenizer, a model card. Without a tokenizer it refuses."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from ports.convert import main
from tests.test_train import TINY, train

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["3+4=", "9+9=", "0+7="]


def convert(*args, env=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "ports.convert", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three steps of the CPU default, a checkpoint at each (the last two kept), the final HF export."""
    run = tmp_path_factory.mktemp("convert") / "run"
    train(*TINY, "--train.max_steps", "3", "--train.save_steps", "1", "--train.keep_checkpoints", "2",
          "--log.plots", "false", "--train.output_dir", str(run))
    return run


def metrics_at(run: Path, step: int) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in rows if r["step"] == step)


def jgrpo_logits(checkpoint: Path, ids: np.ndarray) -> np.ndarray:
    """jgrpo's logits for a training checkpoint, read with Orbax directly (not through ports)."""
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from jgrpo.model import Qwen2Config
    from ports.orbax_ckpt import read_meta
    from ports.params import model_from_params

    def plain(tree):  # nnx's {"value": array} leaves and "0"-style layer keys, as ports' param dicts
        if not isinstance(tree, dict):
            return jnp.asarray(tree)
        if set(tree) == {"value"}:
            return jnp.asarray(tree["value"])
        return {int(k) if str(k).isdigit() else k: plain(v) for k, v in tree.items()}

    with ocp.StandardCheckpointer() as ckpt:
        params = plain(ckpt.restore((checkpoint / "state").absolute())["params"])
    cfg = Qwen2Config.from_hf_dict(read_meta(checkpoint)["hf_config"])
    logits, _ = model_from_params(cfg, params)(jnp.asarray(ids), jnp.ones(ids.shape, jnp.int32))
    return np.asarray(logits)


def test_training_checkpoint_converts_to_a_folder_transformers_loads(run, tmp_path):
    checkpoint, out = run / "checkpoints" / "2", tmp_path / "hf"
    result = convert("orbax-to-hf", checkpoint, out)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("orbax-to-hf: 27 tensors, ")
    assert f"tokenizer from {run / 'checkpoints' / 'tokenizer'}" in result.stdout  # what the run saved

    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    reference = transformers.AutoTokenizer.from_pretrained(run / "initial_model")
    assert len(tokenizer) == len(reference) > 10 and tokenizer.vocab_size == reference.vocab_size > 10
    assert tokenizer.get_vocab() == reference.get_vocab()
    for text in PROMPTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text) and tokenizer.decode(ids) == text

    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = tokenizer(PROMPTS, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch_logits = hf(ids).logits.numpy()
    ours = jgrpo_logits(checkpoint, ids.numpy())
    np.testing.assert_allclose(torch_logits, ours, atol=1e-4, rtol=0)
    # Step 2's weights, not another step's or the initial model's.
    assert np.abs(jgrpo_logits(run / "checkpoints" / "3", ids.numpy()) - ours).max() > 1e-4

    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers"
    assert "# GRPO checkpoint, step 2" in card.text and "| Steps | 2 of 3 |" in card.text
    recipe = next(line for line in card.text.splitlines() if line.startswith("| Recipe |"))
    assert recipe in ("| Recipe | `tiny` |", "| Recipe | `conf/tiny.yaml` |"), recipe  # the CPU default
    assert f"| Final reward | {metrics_at(run, 2)['reward']:.4f} at step 2 " in card.text
    assert "| Tokenizer | included |" in card.text


def test_training_writes_its_tokenizer_once_and_a_card_with_the_final_export(run):
    saved = run / "checkpoints" / "tokenizer"
    assert sorted(p.name for p in saved.iterdir()) == sorted(
        p.name for p in (run / "initial_model").iterdir() if p.suffix != ".safetensors" and p.name != "config.json")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2", "3", "manifests", "tokenizer"]
    text = (run / "hf" / "final" / "README.md").read_text()
    assert "| Steps | 3 of 3 |" in text and f"| Final reward | {metrics_at(run, 3)['reward']:.4f} at step 3 " in text
    tokenizer = transformers.AutoTokenizer.from_pretrained(run / "hf" / "final")
    assert tokenizer.decode(tokenizer("3+4=", add_special_tokens=False)["input_ids"]) == "3+4="


def _lonely_checkpoint(run: Path, tmp_path: Path) -> Path:
    """A step folder copied away from its run: no tokenizer beside it, no run to look in."""
    lonely = tmp_path / "copied" / "2"
    shutil.copytree(run / "checkpoints" / "2", lonely)
    return lonely


def test_without_a_tokenizer_it_refuses_and_writes_nothing(run, tmp_path, capsys):
    checkpoint = _lonely_checkpoint(run, tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["orbax-to-hf", str(checkpoint), str(tmp_path / "out")]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("error: no tokenizer found for "), err
    assert "--tokenizer DIR" in lines[0] and "--no-tokenizer" in lines[0]
    assert set(tmp_path.iterdir()) == before  # no destination, no temporary folder

    # Asked for explicitly: the weights alone, and a card that says so.
    assert main(["orbax-to-hf", str(checkpoint), str(tmp_path / "bare"), "--no-tokenizer"]) == 0
    files = sorted(p.name for p in (tmp_path / "bare").iterdir())
    assert files == ["README.md", "config.json", "generation_config.json", "model.safetensors"]
    assert "| Tokenizer | **none**" in (tmp_path / "bare" / "README.md").read_text()
    # Or from a folder named on the command line.
    assert main(["orbax-to-hf", str(checkpoint), str(tmp_path / "named"),
                 "--tokenizer", str(run / "checkpoints" / "tokenizer")]) == 0
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "named").decode(
        transformers.AutoTokenizer.from_pretrained(tmp_path / "named")("3+4=")["input_ids"]) == "3+4="
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["orbax-to-hf", str(checkpoint), str(tmp_path / "both"), "--tokenizer", "x", "--no-tokenizer"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "both").exists()


def test_messages_name_the_real_flag(run, tmp_path):
    checkpoint, out = run / "checkpoints" / "3", tmp_path / "hf"
    assert convert("orbax-to-hf", checkpoint, out).returncode == 0
    (out / "mine.txt").write_text("keep")
    again = convert("orbax-to-hf", checkpoint, out)
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == f"error: destination exists: {out} (pass --overwrite to replace it)\n"
    assert (out / "mine.txt").read_text() == "keep"
    replaced = convert("orbax-to-hf", checkpoint, out, "--overwrite")
    assert replaced.returncode == 0 and not (out / "mine.txt").exists()
    for source in ("ports/convert.py", "ports/hf_export.py", "ports/orbax_ckpt.py", "jgrpo/checkpoint.py"):
        assert "pass overwrite" not in (ROOT / source).read_text(), source


def test_push_to_hub_failure_is_one_line_and_keeps_the_local_folder(run, tmp_path):
    # The upload itself needs the network and a token (untested); offline, it must fail cleanly.
    out = tmp_path / "hf"
    result = convert("orbax-to-hf", run / "checkpoints" / "3", out, "--push-to-hub", "someone/tiny-grpo",
                     env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1 and result.stdout.startswith("orbax-to-hf: 27 tensors, ")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: wrote {out}, but pushing it to someone/tiny-grpo failed")
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()


def test_model_card_names_a_hub_base_model_and_what_it_does_not_know(tmp_path):
    from jgrpo.checkpoint import model_card

    snapshot = "/cache/huggingface/hub/models--deepseek-ai--DeepSeek-R1-Distill-Qwen-1.5B/snapshots/ad9f0ae0/"
    card = model_card(step=500, model_type="qwen2", config={"model": {"path": snapshot}, "train": {"max_steps": 500}},
                      recipe="open_rs3", run_dir=tmp_path)  # a run folder without metrics.jsonl
    assert card.data.base_model == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" and "qwen2" in card.data.tags
    for row in ("| Recipe | `open_rs3` |", "| Steps | 500 of 500 |", "| Final reward | not recorded |"):
        assert row in card.text, row
    card = model_card(step=None, model_type="llama")  # a parameter checkpoint: no run to describe
    assert card.data.base_model is None and "| Base model | unknown" in card.text
    assert "# Llama checkpoint" in card.text and "llama" in card.data.tags
