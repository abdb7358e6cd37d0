"""`python -m jgrpo.train` end to end, crash and resume, signals, and bad input."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from jgrpo.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
# Small and quick, but every stage on: reference model (beta > 0), two iterations per batch
# (stored old log-probs), the importance-sampling correction.
TINY = ["--train.prompts_per_step", "4", "--rollout.num_generations", "4", "--loss.micro_batch_size", "8",
        "--loss.beta", "0.04", "--loss.num_iterations", "2", "--loss.importance_sampling_cap", "2.0",
        "--log.completions_per_step", "4"]


def train(*args, check=True, env=None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-m", "jgrpo.train", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, **kw)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def prompts_per_step(run: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for line in (run / "completions.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["step"], []).append(row["prompt_id"])
    return out


def test_tiny_run_writes_metrics_plots_checkpoint_and_hf_export(tmp_path):
    run = tmp_path / "run"
    train(*TINY, "--train.max_steps", "4", "--train.save_steps", "2", "--train.output_dir", str(run))
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    trl_names = {"loss", "grad_norm", "learning_rate", "kl", "entropy", "clip_ratio/low_mean",
                 "clip_ratio/high_mean", "clip_ratio/region_mean", "reward", "reward_std", "frac_reward_zero_std",
                 "completions/mean_length", "completions/clipped_ratio", "sampling/sampling_logp_difference/mean"}
    assert trl_names <= set(rows[0])
    for stage in ("generate", "reward", "reference", "update", "sync"):
        assert rows[0][f"timing/{stage}"] > 0
    assert rows[-1]["kl"] > 0  # the reference forward really ran and the policy moved away from it
    for name in ("reward", "kl", "completions_mean_length", "learning_rate"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 1000
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    assert load_config(run / "config.yaml").train.max_steps == 4  # the resolved config, loadable as is

    export = run / "hf" / "final"
    hf = transformers.AutoModelForCausalLM.from_pretrained(export).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(export)
    ids = tokenizer(["3+4=", "9+9="], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch_logits = hf(ids).logits.numpy()
    from ports.hf_load import load_hf_model
    import jax.numpy as jnp
    ours, _ = load_hf_model(export)(jnp.asarray(ids.numpy()), jnp.ones(ids.shape, jnp.int32))
    np.testing.assert_allclose(np.asarray(ours), torch_logits, atol=1e-4)
    initial = load_hf_model(run / "initial_model")
    assert not np.allclose(np.asarray(initial.lm_head[...]), np.asarray(load_hf_model(export).lm_head[...]))


def _run_until_killed(run: Path, kill_after: int, sig) -> tuple[int, str]:
    """Starts the 12-step run, sends `sig` once `kill_after` steps are logged: (exit code, stderr)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    log = run.with_name(f"{run.name}.stderr")  # a file, not a pipe: nobody reads it while the run goes
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "jgrpo.train", *TINY, *COMMON, "--train.output_dir", str(run)],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        path = run / "metrics.jsonl"
        if path.is_file() and len(path.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc.returncode, log.read_text()


def _interrupted(tmp_path: Path, sig, latest: int) -> tuple[Path, int, str]:
    """A run stopped by `sig` after a random step <= `latest`: (run folder, exit code, stderr). A tiny
    step takes a fraction of a second, and on a busy machine this process may be scheduled too late
    to signal before the run ends: such a try shows nothing and is made again, earlier."""
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        kill_after = random.Random().randint(4, max(4, latest - 2 * attempt))
        print(f"{signal.Signals(sig).name} after step {kill_after}")
        code, stderr = _run_until_killed(run, kill_after, sig)
        assert (run / "metrics.jsonl").is_file(), stderr[-3000:]
        if max(r["step"] for r in metrics(run)) < 12:
            return run, code, stderr
    raise AssertionError("the run ended three times before it could be stopped")


COMMON = ["--train.max_steps", "12", "--train.save_steps", "3", "--train.keep_checkpoints", "10",
          "--log.plots", "false", "--train.export_hf", "none"]


def _final_state(run: Path):
    last = max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert last == 12
    from jgrpo.checkpoint import STATE
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckpt:
        return ckpt.restore((run / "checkpoints" / "12" / STATE).absolute())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    train(*TINY, *COMMON, "--train.output_dir", str(run))
    return run


def _assert_same_run(a: Path, b: Path):
    import jax
    sa, sb = _final_state(a), _final_state(b)
    leaves_a, leaves_b = jax.tree.leaves(sa), jax.tree.leaves(sb)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bit for bit
    steps_a, steps_b = prompts_per_step(a), prompts_per_step(b)
    assert steps_a == steps_b  # the same prompts at the same steps, each step exactly once
    assert [r["reward"] for r in metrics(a)] == [r["reward"] for r in metrics(b)]


def test_sigkill_at_a_random_step_then_resume_equals_uninterrupted_run(uninterrupted, tmp_path):
    run, _, _ = _interrupted(tmp_path, signal.SIGKILL, latest=9)
    train(*TINY, *COMMON, "--train.output_dir", str(run), "--resume")
    _assert_same_run(uninterrupted, run)


def test_sigterm_saves_a_checkpoint_and_resume_continues(uninterrupted, tmp_path):
    run, code, stderr = _interrupted(tmp_path, signal.SIGTERM, latest=7)
    stopped_at = max(r["step"] for r in metrics(run))
    assert code == 0 and f"stopped by SIGTERM after step {stopped_at}" in stderr, stderr[-3000:]
    saved = max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == stopped_at  # the step it stopped at, not an older one
    train(*TINY, *COMMON, "--train.output_dir", str(run), "--resume")
    _assert_same_run(uninterrupted, run)


def _bad(tmp_path, *args, env=None) -> str:
    proc = train(*args, check=False, env=env)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    return lines[0]


def test_missing_model_folder(tmp_path):
    msg = _bad(tmp_path, "--model.path", str(tmp_path / "nope"), "--train.output_dir", str(tmp_path / "o"))
    assert "nope" in msg
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def test_config_typo(tmp_path):
    msg = _bad(tmp_path, "--train.max_step", "3", "--train.output_dir", str(tmp_path / "o"))
    assert "train.max_step" in msg
    assert not (tmp_path / "o").exists()


def test_dataset_without_answers(tmp_path):
    from tests.tiny_models import make_hf_model
    model = tmp_path / "model"
    make_hf_model(model)
    from jgrpo.tasks.arithmetic import write_tokenizer
    write_tokenizer(model)
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"problem": "1+1=", "answer": "2"}) + "\n" + json.dumps({"problem": "2+2="}) + "\n")
    msg = _bad(tmp_path, "--model.path", str(model), "--data.source", str(data), "--data.system_prompt", "null",
               "--train.output_dir", str(tmp_path / "o"))
    assert "row 1" in msg and "answer" in msg
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def test_missing_dataset_file_and_impossible_mesh(tmp_path):
    model = tmp_path / "model"
    from tests.tiny_models import make_hf_model
    from jgrpo.tasks.arithmetic import write_tokenizer
    make_hf_model(model)
    write_tokenizer(model)
    msg = _bad(tmp_path, "--model.path", str(model), "--data.source", str(tmp_path / "missing.jsonl"),
               "--train.output_dir", str(tmp_path / "o"))
    assert "missing.jsonl" in msg
    msg = _bad(tmp_path, "--train.mesh.fsdp", "3", "--train.output_dir", str(tmp_path / "o2"))
    assert "train.mesh" in msg


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    msg = _bad(tmp_path, "--train.output_dir", str(blocker / "run"))
    assert str(blocker / "run") in msg


def test_existing_run_needs_resume(uninterrupted):
    proc = train(*TINY, *COMMON, "--train.output_dir", str(uninterrupted), check=False)
    assert proc.returncode == 2 and "--resume" in proc.stderr


def test_config_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match="rewards.weight"):
        load_config(None, {"rewards.weight": "1"})
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        load_config(None, {"optim.learning_rate": "fast"})
    with pytest.raises(ConfigError, match="loss.num_generations"):
        load_config(None, {"loss.num_generations": "4"})
    cfg = load_config(None, {"rollout.num_generations": "4", "loss.micro_batch_size": "8", "train.max_steps": "7",
                             "optim.learning_rate": "1e-6"})
    assert cfg.loss.num_generations == 4 and cfg.optim.total_steps == 7 and cfg.optim.learning_rate == 1e-6


def test_importance_sampling_needs_sampler_logprobs_of_the_loss_distribution():
    base = {"loss.importance_sampling_cap": "2.0", "rollout.temperature": "0.7"}
    with pytest.raises(ConfigError, match="needs loss.temperature 1.0, got 0.7"):
        load_config(None, {**base, "loss.temperature": "0.7"})
    with pytest.raises(ConfigError, match="loss.temperature = rollout.temperature"):
        load_config(None, {**base, "rollout.logprobs_mode": "processed"})
    with pytest.raises(ConfigError, match="no top-p/top-k"):
        load_config(None, {**base, "rollout.logprobs_mode": "processed", "loss.temperature": "0.7",
                           "rollout.top_k": "5"})
    with pytest.raises(ConfigError, match="logprobs_mode 'sampled'"):
        load_config(None, {"rollout.logprobs_mode": "sampled"})
    cfg = load_config(None, {**base, "rollout.logprobs_mode": "processed", "loss.temperature": "0.7"})
    assert cfg.rollout.logprobs_mode == "processed"


@pytest.mark.parametrize("mode, rollout_t, loss_t, cap, matches", [
    ("processed", "0.8", "0.8", "2.0", True),
    ("raw", "0.8", "1.0", "2.0", True),
    ("processed", "0.5", "1.0", "null", False),  # control: the metric sees a mismatch (refused with a cap)
])
def test_sampler_logprobs_reach_the_loss_in_the_chosen_mode(tmp_path, mode, rollout_t, loss_t, cap, matches):
    """At step 1 the old policy is the sampler's, so |old - sampler| log-prob is ~0 exactly when the
    sampler reports the distribution the loss computes."""
    run = tmp_path / "run"
    train(*TINY, "--train.max_steps", "1", "--log.plots", "false", "--train.output_dir", str(run),
          "--rollout.logprobs_mode", mode, "--rollout.temperature", rollout_t, "--loss.temperature", loss_t,
          "--loss.importance_sampling_cap", cap)
    difference = metrics(run)[0]["sampling/sampling_logp_difference/mean"]
    assert (difference < 1e-4) == matches, difference


@pytest.mark.parametrize("n, source, funcs, length", [
    (1, "knoveleng/open-s1", ("format", "accuracy"), 4096),
    (2, "knoveleng/open-rs", ("format", "accuracy"), 3584),
    (3, "knoveleng/open-rs", ("format", "cosine"), 3584),
])
def test_open_rs_recipes_carry_the_papers_hyperparameters(n, source, funcs, length):
    cfg = load_config(ROOT / "conf" / f"open_rs{n}.yaml")
    assert cfg.data.source == source and cfg.rewards.funcs == funcs and cfg.rewards.weights == (1.0, 2.0)
    assert cfg.rollout.max_completion_length == length and cfg.rollout.num_generations == 6
    assert (cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.top_k) == (0.7, 1.0, 0)
    assert cfg.rewards.options.cosine.max_len == 3584 and not cfg.rewards.options.cosine.corrected
    assert (cfg.loss.loss_type, cfg.loss.beta, cfg.loss.epsilon_low, cfg.loss.epsilon_high) == ("bnpo", 0.04, 0.2, 0.2)
    assert cfg.loss.num_iterations == 1 and cfg.loss.temperature == 1.0 and cfg.loss.scale_rewards == "group"
    o = cfg.optim
    assert (o.learning_rate, o.schedule, o.min_lr_rate, o.warmup_ratio, o.total_steps) == (
        1e-6, "cosine_with_min_lr", 0.1, 0.1, 500)
    assert (o.b1, o.b2, o.eps, o.weight_decay, o.max_grad_norm) == (0.9, 0.999, 1e-8, 0.0, 1.0)
    # 12 prompts x 6 = 72 completions per update = 6 per device x 3 devices x 4 accumulation steps
    assert cfg.train.prompts_per_step * cfg.rollout.num_generations == 72
    assert cfg.loss.micro_batch_size == 18 and cfg.loss.bnpo_group_size == 6 and cfg.train.mesh.fsdp == 3
    assert cfg.data.max_prompt_length == 512 and cfg.train.seed == 42 and cfg.train.save_steps == 50
    assert cfg.data.system_prompt.startswith("A conversation between User and Assistant.")
    assert cfg.model.compute_dtype == "bfloat16" and cfg.model.remat
    assert cfg.devices.gpu_layout and cfg.devices.trainer_gpus == (0, 1, 2) and cfg.devices.rollout_gpus == (3,)
    assert cfg.rewards.options.grading.mode == "open-rs"  # the paper's rewards item for item
    assert cfg.data.double_bos and cfg.data.order == "trl"  # its generation prompts (BOS twice), its order


def test_one_gpu_recipe_is_open_rs3_on_one_shared_gpu():
    """The same run as open_rs3 (every hyperparameter, the same loss: micro-batches of whole
    6-completion groups), with JAX and vLLM colocated on GPU 0 and JAX capped below vLLM's share."""
    from jgrpo.train import gpu_layout

    three, one = load_config(ROOT / "conf" / "open_rs3.yaml").to_dict(), load_config("open_rs3_1gpu").to_dict()
    layout_keys = {("devices", "trainer_gpus"), ("devices", "rollout_gpus"), ("train", "mesh"),
                   ("train", "output_dir"), ("loss", "micro_batch_size"), ("rollout", "gpu_memory_utilization")}
    for section in three:
        for key in three[section]:
            if (section, key) not in layout_keys:
                assert three[section][key] == one[section][key], f"{section}.{key}"
    cfg = load_config("open_rs3_1gpu")
    assert cfg.loss.micro_batch_size % cfg.loss.bnpo_group_size == 0 and cfg.train.mesh.fsdp == 1
    env = gpu_layout(cfg).environment(["0"])
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == pytest.approx(1 - 0.12 - 0.05)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_hosts_with_two_devices_each_equal_one_host_with_four(tmp_path):
    """Multi-host: two processes on localhost, each with 2 fake CPU devices, joined by
    jax.distributed from the environment into one 4-device mesh, against one process with 4."""
    args = [*TINY, "--train.max_steps", "3", "--train.save_steps", "3", "--log.plots", "false",
            "--train.export_hf", "final"]
    base = {**os.environ, "JAX_PLATFORMS": "cpu"}
    base.pop("XLA_FLAGS", None)
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "jgrpo.train", *args, "--train.output_dir", str(single)], cwd=ROOT,
                   env={**base, "JAX_NUM_CPU_DEVICES": "4"}, check=True, capture_output=True, timeout=600)
    multi = tmp_path / "multi"
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "jgrpo.train", *args, "--train.output_dir", str(multi)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**base, "JAX_NUM_CPU_DEVICES": "2", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                                   "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    # Same rollouts (the sampler's randomness does not depend on the device layout) ...
    assert [r["reward"] for r in metrics(single)] == [r["reward"] for r in metrics(multi)]
    assert prompts_per_step(single) == prompts_per_step(multi)
    # ... and the same update, up to the order of cross-device reductions: AdamW's normalised step
    # turns that fp32 noise in small gradients into ~1e-6 here, against 6 updates of up to lr = 3e-4.
    from ports.hf_load import load_hf_model
    import jax
    a = jax.tree.leaves(jax.device_get(load_hf_model(single / "hf" / "final")))
    b = jax.tree.leaves(jax.device_get(load_hf_model(multi / "hf" / "final")))
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
    initial = jax.tree.leaves(jax.device_get(load_hf_model(single / "initial_model")))
    assert any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, initial))


@pytest.mark.vllm
def test_cpu_default_with_vllm_and_no_other_vllm_flags(tmp_path, monkeypatch):
    """max_model_len follows the run (8 + 3 tokens), the KV cache is sized for the CPU without a
    memory share, vLLM's log goes to vllm.log, and every sync hands over the fp32 model's bytes
    with vLLM sampling from exactly the trainer's weights. Also: the compilation cache fills."""
    pytest.importorskip("vllm")
    from ports.hf_load import checkpoint_tensors

    run, cache = tmp_path / "run", tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_COMPILATION_CACHE_DIR": ""}
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)  # set by the vLLM engine tests in this process
    proc = train("--rollout.engine", "vllm", "--train.max_steps", "3", "--train.output_dir", str(run), env=env)
    assert "INFO" not in proc.stderr and "WARNING" not in proc.stderr
    log = (run / "vllm.log").read_text()
    assert "'max_model_len': 11" in log and "kv_cache_memory_bytes" in log
    model_bytes = sum(info.nbytes for _, info in checkpoint_tensors(run / "initial_model").values())
    for row in metrics(run):
        assert row["sync/bytes"] == model_bytes
        assert row["sampling/sampling_logp_difference/mean"] < 1e-5
    assert list((cache / "jgrpo" / "jax").iterdir())

    msg = _bad(tmp_path, "--rollout.engine", "vllm", "--rollout.max_model_len", "4096", "--train.output_dir",
               str(tmp_path / "o"))
    assert "rollout.max_model_len = 4096 exceeds the model's max_position_embeddings 2048" in msg


def test_compilation_cache_can_be_switched_off(tmp_path):
    """null also turns off a cache the environment names (JAX would otherwise use it from import)."""
    xdg, named = tmp_path / "xdg", tmp_path / "named"
    named.mkdir()
    env = {"XDG_CACHE_HOME": str(xdg), "JAX_COMPILATION_CACHE_DIR": str(named),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    train("--train.max_steps", "1", "--train.compilation_cache", "null", "--train.output_dir", str(tmp_path / "r"),
          env=env)
    assert not (xdg / "jgrpo").exists() and not list(named.iterdir())
    train("--train.max_steps", "1", "--train.output_dir", str(tmp_path / "r2"), env=env)  # the control: auto
    assert list(named.iterdir())


def test_gpu_layouts_are_checked_before_anything_starts(tmp_path):
    """On this CPU machine: the 4-GPU layout names GPUs that do not exist; with four ids visible,
    JAX's backend is still the CPU and the run refuses rather than training there; a GPU shared
    with vLLM needs vLLM's share."""
    out = str(tmp_path / "o")
    msg = _bad(tmp_path, "--devices.gpu_layout", "true", "--train.output_dir", out, env={"CUDA_VISIBLE_DEVICES": "0"})
    assert "name GPU 1, 2, 3, but this process sees 1 GPU" in msg and "open_rs3_1gpu.yaml" in msg
    msg = _bad(tmp_path, "--devices.gpu_layout", "true", "--train.output_dir", out,
               env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert "devices.gpu_layout is true but JAX runs on the cpu" in msg
    msg = _bad(tmp_path, "--devices.gpu_layout", "true", "--devices.trainer_gpus", "[0]", "--devices.rollout_gpus",
               "[0]", "--rollout.engine", "vllm", "--train.output_dir", out, env={"CUDA_VISIBLE_DEVICES": "0"})
    assert "set rollout.gpu_memory_utilization" in msg
