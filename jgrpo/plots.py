"""PNG curves of a run, drawn from its metrics.jsonl; `python -m jgrpo.plots RUN_DIR` redraws them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from jgrpo.run_log import read_metrics

CURVES = {
    "reward": "reward",
    "kl": "KL to the reference",
    "completions/mean_length": "completion length (tokens)",
    "learning_rate": "learning rate",
}


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if len(y) < window:
        return y
    kernel = np.ones(window) / window
    return np.convolve(y, kernel, mode="valid")


def plot_run(run_dir: str | Path) -> list[Path]:
    """Writes run_dir/plots/<metric>.png for each curve the run logged; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    for key, title in CURVES.items():
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if not points:
            continue
        steps, values = map(np.asarray, zip(*points))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, values, lw=0.8, alpha=0.5, label="per step")
        window = max(1, len(values) // 20)
        if window > 1:
            ax.plot(steps[window - 1:], _smooth(values, window), lw=2, label=f"mean of {window}")
            ax.legend()
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        file = out_dir / (key.replace("/", "_") + ".png")
        fig.savefig(file, dpi=100)
        plt.close(fig)
        written.append(file)
    return written


def main(argv: list[str] | None = None) -> int:
    """`python -m jgrpo.plots RUN_DIR`: (re)draws a run's curves, printing each file written."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jgrpo.plots", description=main.__doc__.split(": ", 1)[1])
    parser.add_argument("run_dir", type=Path, help="a run folder (train.output_dir) holding metrics.jsonl")
    args = parser.parse_args(argv)
    try:
        written = plot_run(args.run_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not written:
        print(f"error: {args.run_dir / 'metrics.jsonl'} holds no curve to draw", file=sys.stderr)
        return 2
    for file in written:
        print(file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
