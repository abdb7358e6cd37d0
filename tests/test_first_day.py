"""What a new user types on the first day, through `python -m jgrpo.train` as they would run it:
help, typos, TRL's names, degenerate values, resuming, and what the run says while it works."""

from pathlib import Path

import pytest

from jgrpo.config import ConfigError, RunConfig, load_config
from jgrpo.config_help import TRL_NAMES, all_keys, field_comments
from tests.test_train import _bad, metrics, train

QUICK = ["--train.prompts_per_step", "4", "--rollout.num_generations", "4", "--loss.micro_batch_size", "16",
         "--log.plots", "false", "--train.export_hf", "none"]


def test_help_shows_the_loaded_configs_values_allowed_values_and_comments():
    out = train("--help").stdout
    assert "--rollout.num_generations 8" in out  # conf/tiny.yaml's value, not the built-in 6
    assert "--train.output_dir runs/tiny" in out
    assert "--rollout.engine jax   [jax | vllm]" in out
    assert "completions per prompt (GRPO's group)" in out  # the field's own comment
    assert "--loss.num_generations" not in out  # derived keys are not settable
    out = train("--config", "conf/open_rs3.yaml", "--help").stdout
    assert "--rollout.num_generations 6" in out and "--rollout.engine vllm" in out


def test_trl_names_point_at_real_keys_and_comments_are_read():
    keys = set(all_keys(RunConfig()))
    assert set(TRL_NAMES.values()) <= keys
    assert "temperature" in field_comments(type(RunConfig().rollout))


@pytest.mark.parametrize("args, expected", [
    (["--train.max_step", "3"], "did you mean --train.max_steps"),
    (["--optim.learnig_rate", "1e-5"], "did you mean --optim.learning_rate?"),
    (["--trian.max_steps", "3"], "unknown config key 'trian.max_steps': did you mean --train.max_steps?"),
    (["--learning_rate", "1e-5"], "did you mean --optim.learning_rate?"),
    (["--num_generations", "4"], "did you mean --rollout.num_generations?"),  # not loss.'s: derived from it
    (["--model_name_or_path", "x"], "TRL's model_name_or_path is --model.path here"),
    (["--optim.learning_rate", "-1"], "learning_rate must be >= 0"),
    (["--rollout.temperature", "0"], "temperature must be > 0"),
    (["--rollout.top_p", "1.5"], "top_p must be in (0, 1]"),
    (["--model.compute_dtype", "bf17"], "unknown dtype 'bf17'"),
])
def test_mistakes_get_one_line_that_helps_and_nothing_is_written(tmp_path, args, expected):
    msg = _bad(tmp_path, *args, "--train.output_dir", str(tmp_path / "o"))
    assert expected in msg
    assert not (tmp_path / "o").exists()


def test_double_bos_needs_a_tokenizer_with_a_bos(tmp_path):
    msg = _bad(tmp_path, "--data.double_bos", "true", "--train.output_dir", str(tmp_path / "o"))
    assert "data.double_bos is true but the tokenizer has no BOS token" in msg


def test_reward_weights_default_to_one_each():
    cfg = load_config(None, {"rewards.funcs": "format"})
    assert cfg.rewards.weights == (1.0,)
    assert load_config(None, {"rewards.funcs": "format,accuracy"}).rewards.weights == (1.0, 1.0)
    with pytest.raises(ConfigError, match="2 reward funcs but 1 weights"):
        load_config(None, {"rewards.funcs": "format,accuracy", "rewards.weights": "[1.0]"})
    # A file's weights belong to its funcs: funcs changed on the command line take 1.0 each.
    assert load_config("open_rs3").rewards.weights == (1.0, 2.0)
    assert load_config("open_rs3", {"rewards.funcs": "format"}).rewards.weights == (1.0,)
    assert load_config("open_rs3", {"rewards.funcs": "cosine,format"}).rewards.weights == (1.0, 1.0)
    assert load_config("open_rs3", {"rewards.funcs": "format", "rewards.weights": "[0.5]"}).rewards.weights == (0.5,)


def test_a_gold_column_that_never_parses_is_said_once(tmp_path):
    """Bare answers ("7") graded without normalize_gold: every reward is unparseable_gold_reward,
    which the run says once instead of training on constant rewards in silence."""
    import json
    from jgrpo.tasks.arithmetic import write_tokenizer
    from tests.tiny_models import make_hf_model
    model = tmp_path / "model"
    make_hf_model(model)
    write_tokenizer(model)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"problem": f"{a}+{a}=", "answer": str(2 * a)}) + "\n" for a in range(8)))
    args = [*QUICK, "--model.path", str(model), "--data.source", str(data), "--data.system_prompt", "null",
            "--rewards.funcs", "accuracy", "--rewards.options.accuracy.gold_column", "answer", "--train.max_steps", "2"]
    proc = train(*args, "--train.output_dir", str(tmp_path / "bare"))
    said = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.startswith("warning: ")]
    assert said == ["warning: step 1: no gold answer of this step parsed (rewards/accuracy/gold_unparseable 16 of "
                    "16), so each completion got unparseable_gold_reward 1.0; check "
                    "rewards.options.accuracy.gold_column ('answer'), or set rewards.options.accuracy.normalize_gold "
                    "true for a bare answer column"]
    assert {r["reward"] for r in metrics(tmp_path / "bare")} == {1.0}
    proc = train(*args, "--rewards.options.accuracy.normalize_gold", "true", "--train.output_dir", str(tmp_path / "ok"))
    assert "warning: " not in proc.stderr
    assert all(r["rewards/accuracy/gold_unparseable"] == 0 for r in metrics(tmp_path / "ok"))


def test_missing_model_folder_leaves_nothing_behind(tmp_path):
    msg = _bad(tmp_path, "--model.path", str(tmp_path / "nope"), "--train.output_dir", str(tmp_path / "o"))
    assert "nope" in msg
    assert not (tmp_path / "o").exists()


def test_stages_compiling_and_summary_are_shown(tmp_path):
    run = tmp_path / "run"
    proc = train(*QUICK, "--train.max_steps", "2", "--train.output_dir", str(run))
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("[") and "starting" in lines[0]
    assert any("devices: 1 x cpu" in line for line in lines)
    assert any("model loaded" in line for line in lines)
    assert "compiling the first step" in proc.stderr  # on the progress bar
    assert "done: step 2 of 2" in proc.stdout and f"checkpoints: {run / 'checkpoints'} (step 2)" in proc.stdout


def _snapshot(run: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in run.rglob("*")}


def test_resume_never_misleads(tmp_path):
    """A finished run says so and changes nothing; a resume without a checkpoint names the folder;
    a longer run under a schedule that stretches with max_steps is refused, while a constant
    schedule extends."""
    run = tmp_path / "run"
    cosine = [*QUICK, "--optim.schedule", "cosine", "--train.output_dir", str(run)]
    train(*cosine, "--train.max_steps", "2")
    before = _snapshot(run)
    proc = train(*cosine, "--train.max_steps", "2", "--resume")
    assert "is complete: its last checkpoint is step 2 of train.max_steps 2; nothing to do" in proc.stdout
    assert _snapshot(run) == before

    msg = _bad(tmp_path, *cosine, "--train.max_steps", "3", "--resume")
    assert "cannot resume with train.max_steps 3: the run's cosine learning-rate schedule spans its 2 steps" in msg

    msg = _bad(tmp_path, *QUICK, "--train.output_dir", str(tmp_path / "fresh"), "--resume")
    assert f"{tmp_path / 'fresh' / 'checkpoints'} holds no checkpoint to resume from" in msg

    constant = tmp_path / "constant"
    train(*QUICK, "--train.output_dir", str(constant), "--train.max_steps", "1")
    train(*QUICK, "--train.output_dir", str(constant), "--train.max_steps", "2", "--resume")
    assert [r["step"] for r in metrics(constant)] == [1, 2]


def test_logs_carry_what_trl_logs_and_a_resumed_run_keeps_its_wandb_run(tmp_path):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    args = [*QUICK, "--train.output_dir", str(run), "--log.wandb", "true"]
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    train(*args, "--train.max_steps", "2", env=env)
    train(*args, "--train.max_steps", "3", "--resume", env=env)

    rows = metrics(run)
    for key in ("completions/min_length", "completions/max_length", "completions/min_terminated_length",
                "completions/mean_terminated_length", "completions/max_terminated_length", "num_tokens"):
        assert key in rows[0], key
    assert rows[0]["completions/min_length"] <= rows[0]["completions/mean_length"] <= rows[0]["completions/max_length"]
    tokens = [r["num_tokens"] for r in rows]
    assert tokens[0] > 0 and tokens[0] < tokens[1] < tokens[2]  # cumulative, also across the resume

    import json
    completions = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    first = completions[0]
    assert first["prompt"].endswith("=") and first["prompt_id"] + "=" == first["prompt"]
    assert set(first["rewards"]) == {"exact_answer", "number_then_stop"}
    assert isinstance(first["advantage"], float)
    assert first["reward"] == pytest.approx(first["rewards"]["exact_answer"] + 0.2 * first["rewards"]["number_then_stop"])

    first_events = sorted((run / "tensorboard").glob("events.out.tfevents.*"))[0]  # the fresh start's
    assert b"learning_rate" in first_events.read_bytes()  # the run config, as text
    assert list((run / "tensorboard" / "hparams").iterdir())

    run_id = (run / "wandb_run_id").read_text().strip()
    offline_runs = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(name.endswith(run_id) for name in offline_runs)


@pytest.mark.vllm
def test_evaluate_runs_on_the_default_runs_export_with_its_defaults(tmp_path):
    """The export has no chat template and 2,048 positions: evaluate prompts with the plain text,
    fits the new tokens to the positions, and its default engine (vLLM) starts on this CPU."""
    pytest.importorskip("vllm")
    import os
    import subprocess
    import sys

    run = tmp_path / "run"
    train(*QUICK, "--train.max_steps", "1", "--train.export_hf", "final", "--train.output_dir", str(run))
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_CPU_KVCACHE_SPACE", "XLA_FLAGS")}
    proc = subprocess.run([sys.executable, "-m", "jgrpo.evaluate", "--model", str(run / "hf" / "final"),
                           "--benchmarks", "amc23", "--limit", "2", "--output", str(tmp_path / "eval")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| final | avg@1 |" in proc.stdout
    assert "no chat template" in proc.stderr and "at most" in proc.stderr
    assert "Traceback" not in proc.stderr and "INFO" not in proc.stderr
    assert (tmp_path / "eval" / "vllm.log").stat().st_size > 0


@pytest.mark.parametrize("program, command", [(["ports.convert", "hf-to-orbax"], ["a", "b"]),
                                              (["jgrpo.evaluate"], ["--model", "a"])])
def test_every_cli_spells_dtypes_one_way_and_accepts_the_short_names(program, command, tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=tmp_path)

    assert "{float32,bfloat16,float16}" in run(*program, "--help").stdout
    bad = run(*program, *command, "--dtype", "bf17")
    assert bad.returncode != 0 and "unknown dtype 'bf17'; choose one of float32, bfloat16, float16" in bad.stderr
    assert "--dtype" not in run(*program, *command, "--dtype", "bf16").stderr  # accepted; fails on the missing model


def test_every_imported_package_is_declared():
    """What jgrpo and ports import is in pyproject's dependencies (ml_dtypes was not), and every
    declared dependency is imported (einops was not). ports reads and writes safetensors files itself,
    a tensor at a time: safetensors is not declared."""
    import ast
    import importlib.metadata
    import re
    import sys
    import tomllib

    root = Path(__file__).resolve().parents[1]
    declared = {re.split(r"[<>=\[ ]", d)[0].lower().replace("_", "-")
                for d in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]}
    owners = importlib.metadata.packages_distributions()
    imported = set()
    # ANTLR's generated parser (vendored) falls back to a top-level import of itself: not a package.
    generated = root / "jgrpo/rewards/_vendor/latex2sympy2_extended/gen"
    for path in [p for p in root.glob("jgrpo/**/*.py") if generated not in p.parents] + list(root.glob("ports/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            imported |= {n.split(".")[0] for n in names}
    third_party = {m for m in imported - set(sys.stdlib_module_names) - {"jgrpo", "ports"}}
    # Optional, imported only where a feature asks for them: vLLM, torch (DLPack hand-over), wandb.
    optional = {"vllm", "torch", "wandb"}
    used = {owners[m][0].lower().replace("_", "-") for m in third_party - optional}
    assert used - declared == set()
    assert declared - used == set()
