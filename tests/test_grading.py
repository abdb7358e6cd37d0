"""Grading: math-verify configs, the deadline-bounded pool, benchmark scoring."""

import ctypes
import itertools
import math
import multiprocessing
import os
import re
import signal
import time

import pytest
from latex2sympy2_extended import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify

from jgrpo.benchmarks import BENCHMARKS, load_benchmark, pass_at_k, score_benchmark
from jgrpo.benchmarks.scoring import avg_at_k
from jgrpo.grading import (
    Grader,
    GraderPool,
    GradingOptions,
    Verdict,
    count_verdicts,
    normalize_gold,
    open_rs_verdict,
)

# Grading this takes math-verify about 5 s (its own comparison timeout), far past the
# short deadline used for it; checked below rather than assumed.
PATHOLOGICAL = "So the answer is $\\boxed{10^{10^{8}}}$."
SHORT_DEADLINE_S = 2.0


@pytest.fixture(scope="module")
def grader():
    # The default deadline: a loaded CI machine must not turn slow golds into timeouts.
    with Grader(GradingOptions(num_workers=2)) as g:
        yield g


def open_rs_reference(completion: str, gold: str) -> str:
    """open-rs's accuracy test written out independently, run in-process."""
    gold_parsed = parse(
        gold, extraction_mode="first_match", extraction_config=[LatexExtractionConfig()]
    )
    if len(gold_parsed) == 0:
        return "gold_unparseable"
    answer_parsed = parse(
        completion,
        extraction_config=[
            LatexExtractionConfig(
                normalization_config=NormalizationConfig(
                    nits=False,
                    malformed_operators=False,
                    basic_latex=True,
                    equations=True,
                    boxed="all",
                    units=True,
                ),
                boxed_match_priority=0,
                try_extract_without_anchor=False,
            )
        ],
        extraction_mode="first_match",
    )
    try:
        return "correct" if verify(answer_parsed, gold_parsed) else "wrong"
    except Exception:
        return "wrong"


CASES = [
    # (completion, gold, what a careful human grader says)
    ("I think it is 5.\n</think>\nThe answer is 5.", "$5$", "wrong"),  # no boxed answer
    ("\n</think>\nSo $\\boxed{0.5}$.", "$\\frac{1}{2}$", "correct"),
    ("\n</think>\nSo $\\boxed{\\frac{1}{2}}$.", "$0.5$", "correct"),
    ("\n</think>\nSo $\\boxed{\\dfrac{2}{4}}$.", "$\\boxed{\\frac12}$", "correct"),
    ("First $\\boxed{3}$.\n\nNo, wait: $\\boxed{5}$.", "$5$", "correct"),  # last boxed wins
    ("First $\\boxed{5}$.\n\nNo, wait: $\\boxed{3}$.", "$5$", "wrong"),
    ("\n</think>\n$\\boxed{7}$", "The answer is seven.", "gold_unparseable"),
    ("\n</think>\n$\\boxed{x^2+2x+1}$", "$(x+1)^2$", "correct"),
    ("\n</think>\n$\\boxed{x^2+2x+2}$", "$(x+1)^2$", "wrong"),
]


def test_open_rs_grader_matches_reference_and_hand_labels(grader):
    completions, golds, labels = zip(*CASES)
    verdicts = grader.grade_open_rs(completions, golds)
    reference = [open_rs_reference(c, g) for c, g in zip(completions, golds)]
    assert [v.value for v in verdicts] == reference
    assert [v.value for v in verdicts] == list(labels)


def test_bare_gold_fails_to_parse_unless_normalized(grader):
    completion = "\n</think>\nThus $\\boxed{11\\sqrt{2}}$."
    bare, wrapped = "11\\sqrt2", normalize_gold("11\\sqrt2")
    assert grader.grade_open_rs([completion, completion], [bare, wrapped]) == [
        Verdict.GOLD_UNPARSEABLE,
        Verdict.CORRECT,
    ]


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("69$,$84", "\\boxed{69,84}"),
        ("(-\\infty, 0) \\cup\\{1\\}$.", "\\boxed{(-\\infty, 0) \\cup\\{1\\}}"),
        ("I(0) e^{-\\frac{t}{R C}}\n", "\\boxed{I(0) e^{-\\frac{t}{R C}}}"),
        ("4.5e33", "\\boxed{4.5 \\times 10^{33}}"),
        ("1e-5", "\\boxed{1 \\times 10^{-5}}"),
        ("\\$5", "\\boxed{\\$5}"),
        ("e^{2}", "\\boxed{e^{2}}"),
    ],
)
def test_normalize_gold(answer, expected):
    assert normalize_gold(answer) == expected


def test_e_notation_gold_grades_scientific_answer(grader):
    gold = [normalize_gold("4.5e33")]
    right = "Therefore, the final answer is: $\\boxed{4.5 \\times 10^{33}}$. I hope it is correct"
    euler = "Therefore, the final answer is: $\\boxed{4.5 e 33}$. I hope it is correct"
    assert grader.grade_extractive([right, euler], [gold, gold]) == [Verdict.CORRECT, Verdict.WRONG]


def _run_in_process(target, args, seconds: float) -> bool:
    """True if ``target(*args)`` is still running after ``seconds`` (it is then killed)."""
    process = multiprocessing.get_context("forkserver").Process(target=target, args=args)
    process.start()
    process.join(seconds)
    running = process.is_alive()
    process.kill()
    process.join()
    return running


def test_pathological_completion_is_cut_at_deadline_and_batch_still_graded():
    assert _run_in_process(open_rs_verdict, (PATHOLOGICAL, "$5$"), 1.5 * SHORT_DEADLINE_S), (
        "the crafted completion no longer hangs the grader: pick a slower one"
    )
    completions = ["$\\boxed{5}$", PATHOLOGICAL, "$\\boxed{6}$", "$\\boxed{\\frac{10}{2}}$"]
    with Grader(GradingOptions(num_workers=2, deadline_s=SHORT_DEADLINE_S)) as grader:
        grader.grade_open_rs(["$\\boxed{1}$"], ["$1$"])  # workers started and warm
        start = time.monotonic()
        verdicts = grader.grade_open_rs(completions, ["$5$"] * 4)
        elapsed = time.monotonic() - start
        assert verdicts == [Verdict.CORRECT, Verdict.TIMEOUT, Verdict.WRONG, Verdict.CORRECT]
        # The batch did not wait for the pathological item; the slack covers a busy machine, where
        # the second worker may still be warming up and the killed one's replacement is forked.
        assert elapsed < SHORT_DEADLINE_S + 10.0
        # The killed worker was replaced: the pool keeps working at full strength.
        assert grader.grade_open_rs(["$\\boxed{5}$"] * 3, ["$5$"] * 3) == [Verdict.CORRECT] * 3


def test_pool_timeouts_errors_and_dead_workers():
    with GraderPool(num_workers=2, deadline_s=3.0) as pool:  # long enough for any quick item under load
        outcomes = pool.map(time.sleep, [(0,), (60,), (0,), (0,)])
        assert [o.status for o in outcomes] == ["ok", "timeout", "ok", "ok"]
        outcomes = pool.map(divmod, [(7, 2), (1, 0)])
        assert outcomes[0].value == (3, 1)
        assert outcomes[1].status == "error" and "ZeroDivisionError" in outcomes[1].error
        outcomes = pool.map(os._exit, [(3,)])
        assert outcomes[0].status == "crashed" and "exit code 3" in outcomes[0].error
        outcomes = pool.map(ctypes.string_at, [(0,), (b"ok", 2)])  # a real segfault: reading address 0
        assert [o.status for o in outcomes] == ["crashed", "ok"]
        assert f"exit code {-signal.SIGSEGV}" in outcomes[0].error
        assert [o.value for o in pool.map(abs, [(-1,), (-2,), (-3,)])] == [1, 2, 3]
        assert pool.workers_replaced == 3


def test_pool_reports_a_worker_that_cannot_start():
    with GraderPool(num_workers=1, initializer=next) as pool:  # next() raises TypeError
        with pytest.raises(RuntimeError, match="grader worker failed to start: TypeError"):
            pool.map(abs, [(1,)])


def test_pool_replaces_a_worker_that_died_while_idle():
    with GraderPool(num_workers=1) as pool:
        [outcome] = pool.map(os.getpid, [()])
        os.kill(outcome.value, signal.SIGKILL)  # as the OOM killer would
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # gone (and reaped by the forkserver): its pipe is closed
            try:
                os.kill(outcome.value, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        assert [o.value for o in pool.map(abs, [(-4,), (-5,)])] == [4, 5]
        assert pool.workers_replaced == 1


def _oracle(answer_box: str) -> str:
    return f"Therefore, the final answer is: ${answer_box}$. I hope it is correct"


def _wrong_number(answer: str) -> str:
    try:
        return f"\\boxed{{{int(answer) + 1}}}"
    except ValueError:
        return "\\boxed{-987654.321}"


def _check_oracles(grader, name, rows):
    samples = [
        [_oracle(normalize_gold(r["answer"])), _oracle(_wrong_number(r["answer"]))] for r in rows
    ]
    score = score_benchmark(rows, samples, grader)
    assert [row[0] for row in score.correct] == [True] * len(rows), name
    assert [row[1] for row in score.correct] == [False] * len(rows), name
    assert score.avg_at_k == 0.5 and score.pass_at[1] == 0.5
    assert score.grader_timeouts == 0 and score.grader_errors == 0


def _needs_gold_fix(answer: str) -> bool:
    """Golds that need normalize_gold's fixes (e-notation, inner `$`, trailing dot or
    newline) or are brace-less LaTeX (\\frac43, which open-rs's reward misgrades)."""
    return bool(re.search(r"\d[eE][+-]?\d|\$|\.$|\n|\\frac\s?\d|\\sqrt\d", answer))


def test_eval_grader_oracles_on_tricky_golds(grader):
    """Fast subset of the sweep below: every gold that needs a fix."""
    for name in BENCHMARKS:
        rows = [r for r in load_benchmark(name) if _needs_gold_fix(r["answer"])]
        if rows:
            _check_oracles(grader, name, rows)


@pytest.mark.slow
def test_eval_grader_oracles_on_all_benchmarks(grader):
    """All 1,517 problems: the right oracle scores 100%, a wrong number 0%."""
    for name in BENCHMARKS:
        _check_oracles(grader, name, load_benchmark(name))


def test_benchmark_names_and_sizes():
    sizes = {name: len(load_benchmark(name)) for name in BENCHMARKS}
    expected = {"aime24": 30, "amc23": 40, "math500": 500, "minerva": 272, "olympiadbench": 675}
    assert sizes == expected
    with pytest.raises(ValueError, match=r"unknown benchmark 'gsm8k'; known benchmarks: aime24, "):
        load_benchmark("gsm8k")


@pytest.mark.parametrize("n, c", [(1, 0), (1, 1), (5, 0), (5, 2), (6, 5), (8, 3)])
def test_pass_at_k_equals_subset_enumeration(n, c):
    samples = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(samples, k))
        expected = sum(any(s) for s in subsets) / len(subsets)
        assert math.isclose(pass_at_k(n, c, k), expected, abs_tol=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_avg_at_k_is_mean_of_per_problem_means():
    assert avg_at_k([[True, False, False, False], [True, True, True, True]]) == (0.25 + 1.0) / 2


def test_a_crashed_worker_is_counted_as_such_and_the_rest_graded():
    """Through the Grader that the rewards use: a completion whose grading kills its worker is a
    CRASHED verdict (rewards/grader_crashes), the others are graded, the worker is replaced."""
    with Grader(GradingOptions(num_workers=1, deadline_s=30)) as grader:
        verdicts = grader._run(ctypes.string_at, [(0,)])
        assert verdicts == [Verdict.CRASHED]
        assert grader.grade_open_rs(["$\\boxed{5}$"], ["$5$"]) == [Verdict.CORRECT]
        assert count_verdicts(verdicts)["crashed"] == 1
