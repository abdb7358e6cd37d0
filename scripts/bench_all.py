"""Runs every benchmark that writes BENCHMARKS.md, one after the other (never two at once: they
would share the 2 cores), so the file is regenerated from one sitting. Each script keeps its
results under runs/bench/ and rewrites only its own section.

    python scripts/bench_all.py [--only grpo_step,scaling,budget]

On a 2-core machine this takes hours (TRL's steps dominate); run the scripts one by one to spread it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
BENCHES = {"budget": "bench_budget.py", "grpo_step": "bench_grpo_step.py", "scaling": "bench_scaling.py",
           "checkpoint": "bench_checkpoint.py", "attention": "bench_attention.py"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHES))
    args = parser.parse_args()
    for name in args.only.split(","):
        print(f"=== {BENCHES[name]}", flush=True)
        subprocess.run([sys.executable, str(SCRIPTS / BENCHES[name])], check=True)


if __name__ == "__main__":
    main()
