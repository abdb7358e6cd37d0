"""How jgrpo's full GRPO step grows with completion length and group size, on the CPU workload of
bench_grpo_step.py (same model, prompts in file order, forced full length, beta 0.04, bnpo): L in
256, 512, 1024, 2048 at G = 4, and G in 2, 4, 8 at L = 256, always 8 prompts per step (so 8 x G
completions). Each point runs in its own process: warm-up steps (compilation) then the median of
the timed steps. jgrpo only: TRL at 2048 tokens would take hours on this machine.

    python scripts/bench_scaling.py [--lengths 256,512,1024,2048] [--groups 2,4,8] [--warmup 2 --steps 1]

Points accumulate in runs/bench/scaling.json (a later run over other points keeps the earlier
ones) and the table is written to BENCHMARKS.md.
"""

from __future__ import annotations

import bench_common as bc  # first: bench_sampler sets the OpenMP/vLLM environment before torch loads

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

RESULTS = "scaling"
BASE_LENGTH, BASE_GROUP = 256, 4


def run_point(length: int, group: int, args) -> dict:
    from bench_grpo_step import jgrpo_trainer, run_trainer

    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="jgrpo-scaling-") as tmp:
        trainer = jgrpo_trainer("jax", length, group, steps, args.micro_batch, args.chunk, Path(tmp))
        result = run_trainer(trainer, steps, args.warmup, f"L={length} G={group}")
        trainer.logger.close()
        trainer.reward_fn.close()
    return result


def points(args) -> list[tuple[int, int]]:
    grid = [(int(length), BASE_GROUP) for length in args.lengths.split(",") if length]
    grid += [(BASE_LENGTH, int(group)) for group in args.groups.split(",") if group]
    return list(dict.fromkeys(grid))  # the base point once


def report(results: dict, grid: list[tuple[int, int]]) -> str:
    base = results.get(f"L{BASE_LENGTH}-G{BASE_GROUP}")
    missing = [(length, group) for length, group in grid if f"L{length}-G{group}" not in results]
    rows = []
    for key in sorted(results, key=lambda k: tuple(int(x[1:]) for x in k.split("-"))):
        r = results[key]
        length, group = (int(x[1:]) for x in key.split("-"))
        relative = f"{r['seconds_per_step'] / base['seconds_per_step']:.2f}x" if base else "-"
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts"].items() if k not in ("reward", "sync"))
        rows.append([length, group, bc.PROMPTS_PER_STEP * group, f"{r['seconds_per_step']:.1f}", relative,
                     f"{r['tokens_per_second']:.0f}", parts, r["warmup"], f"{len(r['steps']) - r['warmup']}"])
    return "\n".join([
        "## Scaling of jgrpo's step with completion length and group size (CPU)", "",
        "`python scripts/bench_scaling.py`: the workload of the full-step comparison (8 prompts per step, "
        "forced full length, beta 0.04, bnpo, fp32, 8 completions per micro-batch), jgrpo with its JAX "
        "sampler. Median of the timed steps after the warm-up steps (the second step can still compile a new "
        "prompt bucket: a few seconds); on this loaded 2-core machine a point at L = 2048 costs minutes a "
        "step, so points have few timed steps (last column).",
        f"Machine: {bc.machine()}.", "",
        bc.markdown_table(["L", "G", "completions", "s/step", f"vs L={BASE_LENGTH} G={BASE_GROUP}",
                           "completion tokens/s", "parts (s)", "warm-up steps", "timed steps"], rows),
        *(["", "Not measured yet: " + ", ".join(f"L={length} G={group}" for length, group in missing)
           + " (`python scripts/bench_scaling.py --lengths '"
           + ",".join(str(length) for length, group in missing if group == BASE_GROUP) + "' --groups '"
           + ",".join(str(group) for length, group in missing if length == BASE_LENGTH) + "'` adds them)."]
          if missing else [])])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="256,512,1024,2048")
    parser.add_argument("--groups", default="2,4,8")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--report-only", action="store_true", help="rewrite BENCHMARKS.md from the saved results")
    parser.add_argument("--point", help=argparse.SUPPRESS)  # internal: "L,G", run here
    args = parser.parse_args()

    bc.make_model(bc.MODEL_DIR)
    if args.point:
        length, group = map(int, args.point.split(","))
        bc.save_result(RESULTS, f"L{length}-G{group}", run_point(length, group, args))
        return
    full_grid = points(parser.parse_args([]))
    for length, group in [] if args.report_only else points(args):
        print(f"== L={length} G={group}", flush=True)
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--point", f"{length},{group}"], check=True)
        bc.write_section("bench_scaling", report(bc.load_results(RESULTS), full_grid))
    bc.write_section("bench_scaling", report(bc.load_results(RESULTS), full_grid))
    print(report(bc.load_results(RESULTS), full_grid))


if __name__ == "__main__":
    main()
