"""Benchmark scores from graded samples: avg@k and unbiased pass@k."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jgrpo.choices import check_choice
from jgrpo.grading import EVAL_GRADERS, Grader, Verdict, count_verdicts, lighteval_gold, normalize_gold

_DATASET_TO_BENCHMARK = {"minerva_math": "minerva"}


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): the chance that k of the n samples, drawn
    without replacement, include a correct one: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= num_correct <= num_samples:
        raise ValueError(f"num_correct {num_correct} must be in [0, num_samples={num_samples}]")
    if not 1 <= k <= num_samples:
        raise ValueError(f"k={k} must be in [1, num_samples={num_samples}]")
    if num_samples - num_correct < k:
        return 1.0
    # The product form avoids huge binomials.
    terms = 1.0 - k / np.arange(num_samples - num_correct + 1, num_samples + 1)
    return float(1.0 - np.prod(terms))


def avg_at_k(correct: Sequence[Sequence[bool]]) -> float:
    """Mean accuracy over problems of the mean over each problem's k samples (avg@k; with
    k = 1 this is open-rs's single-sample "pass@1")."""
    return float(np.mean([np.mean(row) for row in correct]))


@dataclass(frozen=True)
class BenchmarkScore:
    """``correct[i][j]``: sample j of problem i. ``pass_at`` maps k to mean pass@k."""

    num_problems: int
    samples_per_problem: int
    avg_at_k: float
    pass_at: dict[int, float]
    correct: list[list[bool]]
    grader_timeouts: int
    grader_errors: int
    grader_crashes: int


def score_benchmark(
    rows: Sequence[dict],
    completions: Sequence[Sequence[str]],
    grader: Grader,
    ks: Sequence[int] = (1,),
    grader_name: str = "jgrpo",
    benchmark: str | None = None,
) -> BenchmarkScore:
    """Grade ``completions[i]`` (k samples of problem ``rows[i]``).

    ``grader_name="jgrpo"`` (default): the corrected grader against the row's ``answer``
    cleaned by :func:`normalize_gold`. ``"lighteval"``: lighteval's extractive match as open-rs
    ran it, against the gold open-rs's task used for ``benchmark`` (default: read from the rows'
    ``dataset``), see :func:`jgrpo.grading.lighteval_gold`.

    A grader timeout or error counts as wrong (and is counted)."""
    check_choice("grader", grader_name, EVAL_GRADERS)
    if not rows:
        raise ValueError("no problems to score")
    if len(rows) != len(completions):
        raise ValueError(f"got completions for {len(completions)} of {len(rows)} problems")
    sizes = {len(samples) for samples in completions}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            f"every problem needs the same number (>0) of samples, got {sorted(sizes)}"
        )
    n = sizes.pop()
    flat = [c for samples in completions for c in samples]
    if grader_name == "lighteval":
        name = benchmark or _DATASET_TO_BENCHMARK.get(rows[0]["dataset"], rows[0]["dataset"])
        paper_golds = [lighteval_gold(name, row) for row in rows]
        verdicts = grader.grade_lighteval(flat, [g for g in paper_golds for _ in range(n)])
    else:
        golds = [(normalize_gold(row["answer"]),) for row in rows]
        verdicts = grader.grade_extractive(flat, [g for g in golds for _ in range(n)])
    correct = [
        [v is Verdict.CORRECT for v in verdicts[i * n : (i + 1) * n]] for i in range(len(rows))
    ]
    counts = count_verdicts(verdicts)
    return BenchmarkScore(
        num_problems=len(rows),
        samples_per_problem=n,
        avg_at_k=avg_at_k(correct),
        pass_at={k: float(np.mean([pass_at_k(n, sum(row), k) for row in correct])) for k in ks},
        correct=correct,
        grader_timeouts=counts[Verdict.TIMEOUT],
        grader_errors=counts[Verdict.ERROR],
        grader_crashes=counts[Verdict.CRASHED],
    )
