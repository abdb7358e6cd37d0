"""The five benchmarks open-rs reports, bundled, and their scoring.

``load_benchmark(name)`` gives rows ``{"id", "dataset", "problem", "answer", "original"}``
(sources and licenses in this package's README.md); :func:`score_benchmark` grades
completions with lighteval's extractive match and reports avg@k and pass@k.
"""

from __future__ import annotations

import json
from pathlib import Path

from jgrpo.benchmarks.scoring import BenchmarkScore, avg_at_k, pass_at_k, score_benchmark

_DIR = Path(__file__).parent
_FILES = {
    "aime24": "aime24.jsonl",
    "amc23": "amc23.jsonl",
    "math500": "math500.jsonl",
    "minerva": "minerva_math.jsonl",
    "olympiadbench": "olympiadbench.jsonl",
}
BENCHMARKS: tuple[str, ...] = tuple(_FILES)


def benchmark_path(name: str) -> Path:
    if name not in _FILES:
        raise ValueError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}")
    return _DIR / _FILES[name]


def load_benchmark(name: str) -> list[dict]:
    with open(benchmark_path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


__all__ = [
    "BENCHMARKS",
    "BenchmarkScore",
    "avg_at_k",
    "benchmark_path",
    "load_benchmark",
    "pass_at_k",
    "score_benchmark",
]
