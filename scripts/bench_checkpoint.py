"""What the checkpoint manifest (each file's size and CRC-32, jgrpo/checkpoint.py) adds to a save.

Saves a training state built from the DeepSeek-R1-Distill-Qwen-1.5B layer shapes (fp32 parameters
and both AdamW moments, as the trainer keeps them; fewer layers and a cut vocabulary so it fits a
small machine) through `Checkpoints.save` without a manifest, then reads the step back for its
manifest on one thread and on a thread per core, and prints each as a ratio of the save, also into
its section of BENCHMARKS.md. The full state (about 21 GB on the A40 layout) is more files of the
same kinds, so the ratio should carry over.

    python scripts/bench_checkpoint.py [--layers 4] [--vocab 32768] [--repeats 4] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import bench_common as bc
from jgrpo.checkpoint import Checkpoints, file_digests, size_and_crc
from jgrpo.model import Qwen2Config
from ports.params import abstract_params

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "jgrpo/assets/tokenizer/deepseek-r1-distill-qwen-1.5b/config.json"
GB = 1e9


def training_state(layers: int, vocab: int, seed: int = 0) -> dict:
    cfg = dataclasses.replace(Qwen2Config.from_json_file(CONFIG), num_hidden_layers=layers, vocab_size=vocab)
    rng = np.random.default_rng(seed)

    def moment_tree():
        return jax.tree.map(lambda a: jax.numpy.asarray(rng.standard_normal(a.shape, np.float32) * 0.02),
                            abstract_params(cfg, dtype=np.float32))
    return {"params": moment_tree(), "mu": moment_tree(), "nu": moment_tree()}


def serial_digests(folder: Path) -> dict[str, list[int]]:
    return {str(p.relative_to(folder)): size_and_crc(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()

    state = training_state(args.layers, args.vocab)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    root = Path(tempfile.mkdtemp(prefix="jgrpo-bench-ckpt-", dir=args.workdir))
    save, one, per_core = [], [], []
    try:
        store = Checkpoints(root / "checkpoints", keep=args.repeats + 1)
        for step in range(1, args.repeats + 2):  # the first save warms Orbax up and is not counted
            start = time.perf_counter()
            store.save(step, state, {"step": step}, write_manifest=False)
            saved = time.perf_counter() - start
            folder = root / "checkpoints" / str(step)
            timed = {}
            for digests in (serial_digests, file_digests)[::1 if step % 2 else -1]:  # each goes first in turn
                start = time.perf_counter()
                timed[digests] = (digests(folder), time.perf_counter() - start)
            assert timed[serial_digests][0] == timed[file_digests][0]
            if step > 1:
                save.append(saved), one.append(timed[serial_digests][1]), per_core.append(timed[file_digests][1])
        store.close()
        files = len(timed[file_digests][0])
    finally:
        shutil.rmtree(root, ignore_errors=True)

    save_s, one_s, per_core_s = (statistics.median(v) for v in (save, one, per_core))
    result = {"state_gb": nbytes / GB, "files": files, "threads": os.cpu_count(),
              "save_s": save_s, "manifest_one_thread_s": one_s, "manifest_per_core_s": per_core_s}
    print(json.dumps(result))
    table = bc.markdown_table(["", "seconds (median)", "of the save"], [
        ["save (Orbax, no manifest)", f"{save_s:.2f}", "1.00"],
        ["manifest, one thread", f"{one_s:.2f}", f"{one_s / save_s:.2f}"],
        [f"manifest, a thread per core ({os.cpu_count()})", f"{per_core_s:.2f}", f"{per_core_s / save_s:.2f}"],
    ])
    print(table)
    bc.write_section("bench_checkpoint", f"""
## Checkpoint manifests: what the CRC-32 read-back adds to a save (`python scripts/bench_checkpoint.py`)

A training state of the 1.5B's layer shapes ({args.layers} layers, vocabulary {args.vocab}; fp32 parameters and both
AdamW moments): {nbytes / GB:.2f} GB in {files} files, saved {args.repeats} times after a warm-up save. The manifest
reads each saved file back for its CRC-32 (jgrpo/checkpoint.py); the two reads alternate which goes first.
{bc.machine()}.

{table}

The full state on the A40 layout is about 21 GB in files of the same kinds, so a save there should grow by
about the same fraction; not measured on a GPU machine, whose many cores the threaded read uses.
""")


if __name__ == "__main__":
    main()
