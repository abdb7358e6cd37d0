"""The faults a long run meets, each made to happen: a damaged checkpoint, a full disk, a
non-finite reward, a crashed rollout engine. Each is survived or stops the run with one line and a
resumable checkpoint (RELIABILITY.md)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jgrpo.config import load_config
from tests.test_train import ROOT, _bad, metrics, train

QUICK = ["--train.prompts_per_step", "4", "--rollout.num_generations", "4", "--loss.micro_batch_size", "16",
         "--log.plots", "false", "--train.export_hf", "none", "--train.keep_checkpoints", "10"]


def _truncate_largest_file(step_dir: Path) -> Path:
    victim = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return victim


def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_resumes_from_the_intact_one(tmp_path):
    run = tmp_path / "run"
    args = [*QUICK, "--train.save_steps", "2", "--train.output_dir", str(run)]
    train(*args, "--train.max_steps", "4")
    victim = _truncate_largest_file(run / "checkpoints" / "4")

    proc = train(*args, "--train.max_steps", "6", "--resume")
    assert f"warning: checkpoint 4 is damaged ({victim.relative_to(run / 'checkpoints' / '4')} is" in proc.stderr
    assert "resuming from checkpoint 2" in proc.stderr and "resumed from step 2" in proc.stdout
    assert [r["step"] for r in metrics(run)] == [1, 2, 3, 4, 5, 6]  # steps 3-4 redone, each logged once
    assert (run / "checkpoints" / "4.damaged").is_dir() and (run / "checkpoints" / "6").is_dir()

    out = tmp_path / "hf"
    _truncate_largest_file(run / "checkpoints" / "6")
    convert = subprocess.run([sys.executable, "-m", "ports.convert", "orbax-to-hf", str(run / "checkpoints" / "6"),
                              str(out)], capture_output=True, text=True)
    assert convert.returncode == 1 and not out.exists()
    assert [line for line in convert.stderr.splitlines() if line.strip()] == [
        f"error: checkpoint {run / 'checkpoints' / '6'} is damaged: {convert.stderr.split(': ', 2)[2].strip()}"]

    for step in ("2", "4"):
        _truncate_largest_file(run / "checkpoints" / step)
    msg = _bad(tmp_path, *args, "--train.max_steps", "8", "--resume")
    assert f"no intact checkpoint in {run / 'checkpoints'} (checkpoint 6: " in msg and "checkpoint 2: " in msg


def test_a_full_disk_stops_the_run_in_one_line_and_the_last_checkpoint_resumes(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        run = disk / "run"
        proc = train(*QUICK, "--train.save_steps", "1", "--train.max_steps", "50", "--train.output_dir", str(run),
                     check=False)
        assert proc.returncode == 1
        error = proc.stderr.strip().splitlines()[-1]
        assert error.startswith("error: ") and "No space left on device" in error, proc.stderr[-2000:]
        last = int(error.rsplit("resume from checkpoint ", 1)[1].split()[0])
        copy = tmp_path / "copy"
        subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    train(*QUICK, "--train.save_steps", "1", "--train.max_steps", str(last + 1), "--train.output_dir", str(copy),
          "--resume")
    assert [r["step"] for r in metrics(copy)][-1] == last + 1


def test_non_finite_rewards_skip_the_update_and_stop_the_run_after_a_few(tmp_path):
    run = tmp_path / "run"
    proc = train(*QUICK, "--rewards.funcs", "tests.faulty_rewards:infinite", "--rewards.weights", "null",
                 "--train.max_nonfinite_steps", "2",
                 "--train.save_steps", "1", "--train.max_steps", "5", "--train.output_dir", str(run), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "step 1: non-finite rewards: update skipped" in proc.stderr
    assert lines[-1] == ("error: step 2: non-finite rewards in 2 steps in a row (train.max_nonfinite_steps 2); "
                         "resume from checkpoint 1 with --resume")
    assert [r["update_skipped"] for r in metrics(run)] == [1.0, 1.0]
    # What was saved is the last good state: the initial model, finite, not a NaN one.
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckpt:
        state = ckpt.restore((run / "checkpoints" / "1" / "state").absolute())
    from ports.hf_load import load_hf_model
    initial = jax.tree.leaves(jax.tree.map(np.asarray, load_hf_model(run / "initial_model")))
    saved = [np.asarray(x) for x in jax.tree.leaves(state["params"])]
    assert all(np.isfinite(x).all() for x in saved)
    assert sorted(x.tobytes() for x in saved) == sorted(x.tobytes() for x in initial)


def test_an_engine_crash_stops_with_a_checkpoint_that_resumes_the_same_run(tmp_path, capsys):
    """In this process (4 devices), so the engine can be made to fail at its third call: the run
    saves the state and data cursor from before the failed step, and the resumed run ends where an
    uninterrupted one does, bit for bit."""
    from jgrpo.train import Trainer

    quick = {key.removeprefix("--"): value for key, value in zip(QUICK[::2], QUICK[1::2])}

    def config(run):
        return load_config("tiny", {**quick, "train.max_steps": "4", "train.save_steps": "10",
                                    "train.output_dir": str(run)})

    straight = Trainer(config(tmp_path / "straight"), resume=False)
    assert straight.run() == 0

    trainer = Trainer(config(tmp_path / "crash"), resume=False)
    generate = trainer.engine.generate

    def dies_at_the_third_call(prompts, params):
        if trainer.engine.calls == 2:
            raise RuntimeError("EngineDeadError: the engine core died")
        return generate(prompts, params)

    trainer.engine.generate = dies_at_the_third_call
    assert trainer.run() == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == ("error: step 3: the rollout engine failed (RuntimeError: EngineDeadError: the engine core "
                     "died); resume from checkpoint 2 with --resume")
    resumed = Trainer(config(tmp_path / "crash"), resume=True)
    assert resumed.start_step == 2 and resumed.run() == 0
    assert [r["step"] for r in metrics(tmp_path / "crash")] == [1, 2, 3, 4]
    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _children_named(pid: int, prefix: str) -> list[int]:
    """Pids of the processes whose parent is `pid` and whose name (comm) starts with `prefix`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                name = (entry / "comm").read_text().strip()
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            if parent == pid and name.startswith(prefix):
                found.append(int(entry.name))
    return found


_KILL_MID_GENERATE = """
import os, signal, sys, threading, time
from pathlib import Path
from jgrpo.sampling import SamplingParams
from jgrpo.sampling.vllm_engine import EngineProcessDied, VllmEngine
from tests.test_faults import _children_named
from tests.tiny_models import make_hf_model

folder = Path(sys.argv[1])
make_hf_model(folder, vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
engine = VllmEngine(folder, eos_token_ids=[], dtype="float32", max_model_len=4096, enforce_eager=True,
                    sync_via="folder", sync_dir=folder / "sync")
[core] = _children_named(os.getpid(), "VLLM::EngineCor")
threading.Timer(2.0, os.kill, (core, signal.SIGKILL)).start()
start = time.monotonic()
try:
    engine.generate([[5, 6, 7]] * 8, SamplingParams(max_new_tokens=4000))
    print("generate returned")
except EngineProcessDied as e:
    print(f"raised after {time.monotonic() - start:.0f} s: {e}")
"""


def test_vllm_engine_raises_when_its_engine_process_dies_during_generate(tmp_path):
    """The case vLLM's own client hangs on: its engine process killed while a long generate waits."""
    pytest.importorskip("vllm")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_GENERATE, str(tmp_path / "model")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout.strip().splitlines()[-1]
    assert said.startswith("raised after ") and "vLLM's engine process EngineCore" in said, said
    assert int(said.split()[2]) < 30  # found by the watch, not by a timeout


def test_a_real_vllm_engine_process_killed_mid_run_stops_the_run_in_one_line_and_it_resumes(tmp_path):
    """vLLM's engine in a process of its own (VLLM_ENABLE_V1_MULTIPROCESSING=1, folder sync), killed
    after step 2 as the OOM killer would: vLLM's client alone would wait for it forever; the run stops
    in one line naming the dead process, and resumes from the checkpoint that line names."""
    pytest.importorskip("vllm")
    run = tmp_path / "run"
    args = [*QUICK, "--rollout.engine", "vllm", "--rollout.weight_sync", "folder", "--train.save_steps", "1",
            "--train.output_dir", str(run)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    with open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "jgrpo.train", *args, "--train.max_steps", "100"], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) >= 2:
                break
            time.sleep(0.01)
        [engine] = _children_named(proc.pid, "VLLM::EngineCor")  # comm keeps 15 characters
        os.kill(engine, signal.SIGKILL)
        assert proc.wait(timeout=120) == 1
    finally:
        proc.kill()
    lines = [line for line in (tmp_path / "stderr").read_text().replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("grpo")]  # less the progress bar
    error = lines[-1]
    # Killed mid-call: the watch raises EngineProcessDied; between calls vLLM itself raises EngineDeadError.
    assert error.startswith("error: step ") and ("EngineProcessDied: vLLM's engine process EngineCore" in error
                                                 or "EngineDeadError" in error), lines
    assert not any("Traceback" in line for line in lines)
    last = int(error.rsplit("resume from checkpoint ", 1)[1].split()[0])
    assert 2 <= last < 100 and max(r["step"] for r in metrics(run)) == last
    train(*args, "--train.max_steps", str(last + 2), "--resume", env={"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    assert [r["step"] for r in metrics(run)] == list(range(1, last + 3))


def test_a_log_line_cut_short_by_a_kill_is_dropped_when_the_run_resumes(tmp_path):
    """A SIGKILL in the middle of a write leaves half a JSON line: reading skips it, and the resumed
    run's truncation to its checkpoint drops it instead of failing on it."""
    from jgrpo.run_log import METRICS_FILE, _truncate_after, read_metrics
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "rew')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    _truncate_after(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
