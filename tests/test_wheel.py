"""The package as a user installs it: a wheel in a fresh virtual environment, run from a folder
that is not the checkout (so nothing of the source tree, conf/ included, is within reach)."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding only the jgrpo wheel; its dependencies come from this environment's
    site-packages (a .pth line), so nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy without the checkout's build/ folder, whose stale files setuptools would pack.
    source = shutil.copytree(ROOT, tmp / "source", ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "runs", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("jgrpo-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True,
                   capture_output=True)
    return tmp


def _run(installed, *cmd, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_wheel_runs_the_default_from_anywhere_with_its_console_scripts(installed, tmp_path):
    bin_dir = installed / "venv" / "bin"
    proc = _run(installed, str(bin_dir / "jgrpo-train"), "--train.max_steps", "2", "--train.output_dir",
                str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done: step 2 of 2" in proc.stdout
    # The bundled recipe ran (conf/tiny.yaml: 8 completions per prompt), not the built-in defaults.
    assert "num_generations: 8" in (tmp_path / "run" / "config.yaml").read_text()
    out = _run(installed, str(bin_dir / "jgrpo-train"), "--config", "open_rs3", "--help", cwd=tmp_path).stdout
    assert "--rollout.engine vllm" in out
    for script in ("jgrpo-convert", "jgrpo-evaluate", "jgrpo-plots"):
        proc = _run(installed, str(bin_dir / script), "--help", cwd=tmp_path)
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), script
    proc = _run(installed, str(bin_dir / "jgrpo-plots"), str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0 and "reward.png" in proc.stdout
    imported = _run(installed, str(bin_dir / "python"), "-c", "import jgrpo; print(jgrpo.__file__)", cwd=tmp_path)
    assert str(installed / "venv") in imported.stdout  # the wheel's copy, not the checkout's
    # The paper's grader travels too (vendored; its ANTLR parser is a package of its own).
    vendored = _run(installed, str(bin_dir / "python"), "-c", r"from jgrpo.grading import open_rs_verdict, Verdict; "
                    r"print(open_rs_verdict('$\\boxed{5}$', '$5$') is Verdict.CORRECT)", cwd=tmp_path)
    assert vendored.stdout.strip() == "True", vendored.stderr[-2000:]
