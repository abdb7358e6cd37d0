"""Time and peak memory of `python -m ports.convert` at the real DeepSeek-R1-Distill-Qwen-1.5B shape.

Writes a checkpoint of that config with random bf16 weights, tensor by tensor (never the whole
model in memory), sharded at about 2 GB; then converts HF -> Orbax -> HF, each in its own process,
and prints each conversion's wall time and peak RSS next to the checkpoint size. The goal is a
peak below checkpoint size + 1 GB. Finally checks the output bit for bit against the source.

    python scripts/bench_convert.py [--workdir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors import safe_open

from jgrpo.model import Qwen2Config
from ports.hf_export import plan_shards
from ports.hf_load import INDEX_FILE
from ports.hf_tensors import hf_tensor_infos
from ports.params import abstract_params
from ports.safetensors_file import write_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b/config.json"
SHARD_BYTES = 2 * 10**9
GB = 1e9


def random_tensors(infos, seed: int = 0):
    """Random N(0, 0.02) bf16 values: a 32 MB pool, rolled differently for every tensor, tiled to
    size (drawing 1.8 billion fresh normals would take minutes and prove nothing more)."""
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(2**24, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
    for info in infos:
        n = int(np.prod(info.shape))
        rolled = np.roll(pool, int(rng.integers(pool.size)))
        flat = np.empty(n, ml_dtypes.bfloat16)
        for start in range(0, n, pool.size):
            flat[start:start + pool.size] = rolled[:min(pool.size, n - start)]
        yield info.name, flat.reshape(info.shape)


def write_checkpoint(folder: Path) -> int:
    cfg = Qwen2Config.from_json_file(CONFIG)
    infos = hf_tensor_infos(abstract_params(cfg, dtype=ml_dtypes.bfloat16))
    shards = plan_shards(infos, SHARD_BYTES)
    folder.mkdir()
    names = [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    tensors = random_tensors(infos)
    for file, shard in zip(names, shards):
        write_file(folder / file, shard, tensors)
    weight_map = {info.name: file for file, shard in zip(names, shards) for info in shard}
    total = sum(info.nbytes for info in infos)
    (folder / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    shutil.copyfile(CONFIG, folder / "config.json")
    return total


def _peak_rss(pid: int) -> int | None:
    """VmHWM: the high-water mark of the process's resident set since its exec, in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None  # gone, or a zombie (no memory left to report)


def measured(args: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GB, stdout) of one child process.

    Polls /proc rather than asking wait4 for ru_maxrss: that one also counts the parent's memory
    the child shared between fork and exec, which here is the writer's whole working set."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _peak_rss(child.pid) or 0)
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if child.returncode:
        raise SystemExit(f"{' '.join(args)} failed with exit code {child.returncode}")
    return wall, peak / GB, child.stdout.read().strip()


def disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def same_tensors(a: Path, b: Path) -> int:
    """Compares every tensor of two sharded folders; returns how many there were."""
    def where(folder):
        return json.loads((folder / INDEX_FILE).read_text())["weight_map"]

    wa, wb = where(a), where(b)
    if sorted(wa) != sorted(wb):
        raise SystemExit(f"tensor names differ: {sorted(set(wa) ^ set(wb))[:3]}")
    for name in wa:
        with safe_open(a / wa[name], "numpy") as fa, safe_open(b / wb[name], "numpy") as fb:
            if fa.get_tensor(name).tobytes() != fb.get_tensor(name).tobytes():
                raise SystemExit(f"tensor {name} differs after the round trip")
    return len(wa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="where the ~11 GB of checkpoints go")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_convert_", dir=args.workdir))
    try:
        start = time.perf_counter()
        size = write_checkpoint(work / "hf")
        print(f"wrote {work / 'hf'}: {size / GB:.2f} GB of bf16 tensors in {time.perf_counter() - start:.0f} s")
        _, baseline, _ = measured(["-c", "import ports.convert, jax; jax.devices()"])
        print(f"baseline: a process that imports ports.convert peaks at {baseline:.2f} GB RSS")
        steps = [("hf-to-orbax", ["-m", "ports.convert", "hf-to-orbax", str(work / "hf"), str(work / "orbax")]),
                 ("orbax-to-hf", ["-m", "ports.convert", "orbax-to-hf", str(work / "orbax"), str(work / "hf2"),
                                  "--max-shard-size", "2GB"])]
        rows = []
        for name, command in steps:
            wall, peak, summary = measured(command)
            print(summary)
            rows.append((name, wall, peak))
        n = same_tensors(work / "hf", work / "hf2")
        print(f"round trip: all {n} tensors bit for bit equal")
        print(f"\ncheckpoint: {size / GB:.2f} GB tensors; on disk: HF {disk_bytes(work / 'hf') / GB:.2f} GB, "
              f"Orbax {disk_bytes(work / 'orbax') / GB:.2f} GB")
        print(f"{'conversion':<12} {'wall s':>7} {'peak RSS GB':>12} {'RSS - ckpt GB':>14}  goal: < ckpt + 1 GB")
        for name, wall, peak in rows:
            verdict = "ok" if peak < size / GB + 1 else "over"
            print(f"{name:<12} {wall:>7.1f} {peak:>12.2f} {peak - size / GB:>14.2f}  {verdict}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
