"""The faults a long run meets, each made to happen: a damaged checkpoint, a full disk, a
non-finite reward, a crashed rollout engine. Each is survived or stops the run with one line and a
resumable checkpoint (RELIABILITY.md)."""

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jgrpo.config import load_config
from tests.test_train import _bad, metrics, train

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
