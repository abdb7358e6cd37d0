"""Draws the PNG curves (reward, KL, completion length, learning rate) of any run folder.

    python scripts/plot_metrics.py RUN_DIR
"""

import sys

from jgrpo.plots import plot_run

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/plot_metrics.py RUN_DIR")
    try:
        for file in plot_run(sys.argv[1]):
            print(file)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
