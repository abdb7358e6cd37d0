"""Math answer grading with math-verify, bounded in time.

Two modes for each use (see EVALUATION.md for every rule and what it changes):

* training rewards (``GradingOptions.mode``): ``open-rs`` is open-rs 2889c47's correctness test,
  item for item: :func:`open_rs_verdict` (its ``accuracy`` reward) and :func:`open_rs_cosine_verdict`
  (its ``cosine`` reward, which normalises with ``boxed=True`` and does not guard ``verify``), run
  on vendored copies of math-verify 0.5.2 and latex2sympy2_extended 1.0.6
  (``jgrpo/rewards/_vendor``). ``jgrpo`` (default) is :func:`jgrpo_verdict`, the corrected test.
* evaluation (``python -m jgrpo.evaluate --grader``): ``lighteval`` is lighteval ed084813's
  extractive match as open-rs's evaluation configured it, item for item
  (:func:`lighteval_verdict`: any_match, per-task golds, raw-string gold fallback, on the vendored
  libraries); ``jgrpo`` (default) is :func:`extractive_match_verdict`, the corrected grader.

The corrected graders (installed math-verify) differ from the paper's only by these rules:

1. several ``\\boxed{}``: the final box alone is the answer (math-verify >= 0.9 grades several
   different boxes as a set, 0.5.2 took the last box unless they were separated by "and"/","...);
2. e-notation (``1.24e-8``) in a gold or in the final box means ``1.24 \\times 10^{-8}`` (math-verify
   reads ``e`` as Euler's number);
3. two numbers are equal only within a relative tolerance (:data:`RELATIVE_TOLERANCE`), so an answer
   off by a power of ten is never right (math-verify rounds to a number of decimals, which makes all
   tiny numbers equal);
4. training only: an exception from ``verify`` is a wrong answer in both rewards;
5. evaluation only: the gold is the benchmark's ``answer`` cleaned by :func:`normalize_gold` for every
   benchmark, and the prediction's first match is graded (lighteval: any match).

math-verify and sympy can take arbitrarily long on a pathological completion, and
math-verify's own ``signal.alarm`` timeouts only work in a main thread and cannot interrupt
long C calls. So every item runs in a worker process with a deadline; a worker that misses
it is killed and replaced, and the item is reported as a timeout.

Worker processes import this module: scripts that create a :class:`Grader` need the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import enum
import functools
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jgrpo.choices import check_choice


class Verdict(enum.StrEnum):
    CORRECT = "correct"
    WRONG = "wrong"
    # open-rs rewards an unparseable gold with 1.0 instead of skipping the sample.
    GOLD_UNPARSEABLE = "gold_unparseable"
    TIMEOUT = "timeout"
    ERROR = "error"  # the grader raised
    CRASHED = "crashed"  # its worker process died (a segfault in a C extension, the OOM killer)


# ---------------------------------------------------------------------------------------
# Gold answers
# ---------------------------------------------------------------------------------------

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_E_NOTATION = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))[eE]([+-]?\d+)$")


def normalize_gold(answer: str) -> str:
    """Turn a bare dataset answer into a gold string math-verify can parse, as ``\\boxed{...}``.

    Measured on the bundled benchmarks: a bare answer (no ``$`` or ``\\boxed``) fails to
    parse for most of MATH-500, Minerva and OlympiadBench; answers written ``69$,$84`` or
    with a trailing ``.``/newline break the LaTeX; and e-notation (``4.5e33``) is read as
    Euler's number times 33, so it is rewritten as ``4.5 \\times 10^{33}``.
    """
    text = _UNESCAPED_DOLLAR.sub("", answer).strip()
    text = text.removesuffix(".").strip()
    text = _E_NOTATION.sub(r"\1 \\times 10^{\2}", text)
    return f"\\boxed{{{text}}}"


# ---------------------------------------------------------------------------------------
# The two graders (run inside worker processes)
# ---------------------------------------------------------------------------------------

# math-verify is imported inside the graders: only worker processes pay for sympy.

GRADING_MODES = ("jgrpo", "open-rs")  # training rewards: GradingOptions.mode
EVAL_GRADERS = ("jgrpo", "lighteval")  # evaluation: python -m jgrpo.evaluate --grader
# Rule 3: numbers within this relative difference are equal (jgrpo mode).
RELATIVE_TOLERANCE = 1e-4


# --- open-rs (paper-exact, vendored math-verify 0.5.2) -----------------------------------


def _paper_libs():
    from jgrpo.rewards._vendor import latex2sympy2_extended as l2s
    from jgrpo.rewards._vendor import math_verify as mv

    return mv, l2s


@functools.cache
def _open_rs_pred_config(boxed):
    mv, l2s = _paper_libs()
    return [
        mv.LatexExtractionConfig(
            normalization_config=l2s.NormalizationConfig(
                nits=False, malformed_operators=False, basic_latex=True, equations=True, boxed=boxed,
                units=True,
            ),
            boxed_match_priority=0,
            try_extract_without_anchor=False,
        )
    ]


@functools.lru_cache(maxsize=4096)
def _parse_open_rs_gold(gold: str):
    mv, _ = _paper_libs()
    return mv.parse(gold, extraction_mode="first_match", extraction_config=[mv.LatexExtractionConfig()])


def open_rs_verdict(completion: str, gold: str) -> Verdict:
    """open-rs's ``accuracy_reward`` test, item for item (vendored math-verify 0.5.2).

    Gold: LaTeX extraction with the default config, first match. Prediction: LaTeX only, boxed
    first, ``boxed="all"`` normalisation, no anchor-less fallback. An exception from ``verify``
    is a wrong answer, as in open-rs."""
    mv, _ = _paper_libs()
    gold_parsed = _parse_open_rs_gold(gold)
    if not gold_parsed:
        return Verdict.GOLD_UNPARSEABLE
    pred = mv.parse(completion, extraction_config=_open_rs_pred_config("all"), extraction_mode="first_match")
    try:
        return Verdict.CORRECT if mv.verify(pred, gold_parsed) else Verdict.WRONG
    except Exception:
        return Verdict.WRONG


def open_rs_cosine_verdict(completion: str, gold: str) -> Verdict:
    """open-rs's ``cosine_scaled_reward`` test, item for item: as :func:`open_rs_verdict` but with
    ``boxed=True`` (which latex2sympy2_extended 1.0.6 treats as neither "all" nor "last": no box
    is stripped by the outer normalisation) and no guard around ``verify``: an exception
    propagates (open-rs's training step would fail; here the item becomes ``Verdict.ERROR``)."""
    mv, _ = _paper_libs()
    gold_parsed = _parse_open_rs_gold(gold)
    if not gold_parsed:
        return Verdict.GOLD_UNPARSEABLE
    pred = mv.parse(completion, extraction_config=_open_rs_pred_config(True), extraction_mode="first_match")
    return Verdict.CORRECT if mv.verify(pred, gold_parsed) else Verdict.WRONG


# --- lighteval (paper-exact evaluation, vendored math-verify 0.5.2) ----------------------

# Which gold each benchmark's lighteval task used (open-rs 2889c47 src/open_r1/evaluate.py) and
# how it was extracted: "expr" (expr_gold_metric) or "latex" (latex_gold_metric).
LIGHTEVAL_GOLDS = {
    "aime24": ("answer", "expr"),
    "amc23": ("answer", "expr"),
    "math500": ("solution", "latex"),
    "minerva": ("solution", "latex"),
    "olympiadbench": ("final_answer", "latex"),
}


def lighteval_gold(benchmark: str, row: dict) -> tuple[str, str]:
    """(gold text, extraction) that open-rs's lighteval task graded against, from a bundled
    benchmark row: ``answer`` for AIME24 and AMC23, the full ``solution`` for MATH-500 and
    Minerva, the source's ``final_answer`` (with its ``$``) for OlympiadBench."""
    field, kind = LIGHTEVAL_GOLDS[benchmark]
    if field == "answer":
        return row["answer"], kind
    original = row.get("original") or {}
    if field == "solution":
        return original["solution"], kind
    return original["final_answer"][0], kind


LIGHTEVAL_PRECISION = 5
LIGHTEVAL_TIMEOUT_S = 5


@functools.cache
def _lighteval_configs():
    mv, _ = _paper_libs()
    pred = [mv.ExprExtractionConfig(), mv.LatexExtractionConfig(boxed_match_priority=0)]
    return {"expr": [mv.ExprExtractionConfig()], "latex": [mv.LatexExtractionConfig()]}, pred


@functools.lru_cache(maxsize=4096)
def _parse_lighteval_gold(gold: str, kind: str):
    mv, _ = _paper_libs()
    parsed = mv.parse(gold, _lighteval_configs()[0][kind], fallback_mode="first_match",
                      extraction_mode="any_match", parsing_timeout=LIGHTEVAL_TIMEOUT_S)
    return parsed if parsed else [gold]  # lighteval: an unparseable gold is compared as a string


def lighteval_verdict(prediction: str, gold: str, kind: str) -> Verdict:
    """lighteval ed084813's extractive match as open-rs ran it, item for item: prediction
    extraction expression then LaTeX (boxed first), ``any_match`` (every regex match is tried,
    not only the first), precision 5; the gold extracted with ``kind`` ("expr" or "latex", see
    :data:`LIGHTEVAL_GOLDS`) and compared as a raw string when nothing can be extracted."""
    mv, _ = _paper_libs()
    gold_parsed = _parse_lighteval_gold(gold, kind)
    pred = mv.parse(prediction, _lighteval_configs()[1], fallback_mode="first_match",
                    extraction_mode="any_match", parsing_timeout=LIGHTEVAL_TIMEOUT_S)
    ok = mv.verify(gold_parsed, pred, precision=LIGHTEVAL_PRECISION, timeout_seconds=LIGHTEVAL_TIMEOUT_S)
    return Verdict.CORRECT if ok else Verdict.WRONG


# --- jgrpo (corrected; installed math-verify) --------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_E_NUMBER = re.compile(r"(?<![\w.\\])([+-]?(?:\d+\.?\d*|\.\d+))[eE]([+-]?\d+)(?![\w.])")


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox``) in ``text``, None if none."""
    found = None
    for match in _BOXED.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[match.end():i - 1]
    return found


def rewrite_e_notation(text: str) -> str:
    """Rule 2: ``1.24e-8`` -> ``1.24 \\times 10^{-8}`` wherever a number is written so."""
    return _E_NUMBER.sub(r"\1 \\times 10^{\2}", text)


def final_answer_text(completion: str) -> str:
    """Rules 1 and 2 on a completion: with a box, its final box alone (unescaped ``$`` inside it
    dropped, e-notation rewritten); without one, the whole text with e-notation rewritten."""
    box = last_boxed(completion)
    if box is None:
        return rewrite_e_notation(completion)
    box = _UNESCAPED_DOLLAR.sub("", box)
    return f"$\\boxed{{{rewrite_e_notation(box)}}}$"


def _as_number(expr) -> float | None:
    import sympy

    try:
        if isinstance(expr, sympy.Basic) and expr.is_number and not expr.free_symbols:
            value = complex(sympy.N(expr, 30))
            if value.imag == 0 and math.isfinite(value.real):
                return value.real
    except Exception:
        pass
    return None


def numbers_disagree(golds, preds) -> bool:
    """Rule 3: True when the parsed gold and prediction (math-verify's lists: sympy objects, then
    the matched strings) are plain numbers further apart than :data:`RELATIVE_TOLERANCE` relative
    to the larger. Anything that is not a plain number is left to math-verify."""
    import sympy

    gold_numbers = [_as_number(g) for g in golds if isinstance(g, sympy.Basic)]
    pred_numbers = [_as_number(p) for p in preds if isinstance(p, sympy.Basic)]
    if not gold_numbers or not pred_numbers or None in gold_numbers or None in pred_numbers:
        return False
    return all(abs(a - b) > RELATIVE_TOLERANCE * max(abs(a), abs(b)) for a in gold_numbers for b in pred_numbers)


def _verify_corrected(verify, gold_parsed, pred_parsed, **kwargs) -> bool:
    if not verify(gold_parsed, pred_parsed, **kwargs):
        return False
    return not numbers_disagree(gold_parsed, pred_parsed)


@functools.cache
def _jgrpo_configs():
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig

    gold = [LatexExtractionConfig()]
    pred = [
        LatexExtractionConfig(
            normalization_config=NormalizationConfig(
                nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True
            ),
            boxed_match_priority=0,
            try_extract_without_anchor=False,
        )
    ]
    return gold, pred


@functools.lru_cache(maxsize=4096)
def _parse_jgrpo_gold(gold: str):
    from math_verify import parse

    return parse(rewrite_e_notation_in_boxes(gold), extraction_config=_jgrpo_configs()[0],
                 extraction_mode="first_match")


def rewrite_e_notation_in_boxes(text: str) -> str:
    """Rule 2 for a gold: e-notation inside its ``\\boxed{}`` (or in a bare ``$...$`` gold)."""
    return _BOXED_CONTENT.sub(lambda m: m.group(1) + rewrite_e_notation(m.group(2)) + "}", text)


_BOXED_CONTENT = re.compile(r"(\\boxed\s*\{)([^{}]*)\}")


def jgrpo_verdict(completion: str, gold: str) -> Verdict:
    """The corrected training test (rules 1-4): open-rs's extraction configs on the installed
    math-verify, applied to the final box; e-notation read as powers of ten; numbers compared
    with a relative tolerance; a failing ``verify`` is a wrong answer."""
    from math_verify import parse, verify

    gold_parsed = _parse_jgrpo_gold(gold)
    if not gold_parsed:
        return Verdict.GOLD_UNPARSEABLE
    pred_parsed = parse(final_answer_text(completion), extraction_config=_jgrpo_configs()[1],
                        extraction_mode="first_match")
    try:
        return Verdict.CORRECT if _verify_corrected(verify, pred_parsed, gold_parsed) else Verdict.WRONG
    except Exception:
        return Verdict.WRONG


def training_verdict_fn(mode: str, reward: str = "accuracy") -> Callable[[str, str], Verdict]:
    """The correctness test of ``reward`` ("accuracy" or "cosine") in grading ``mode``."""
    check_choice("grading mode", mode, GRADING_MODES)
    if mode == "jgrpo":
        return jgrpo_verdict
    return open_rs_cosine_verdict if reward == "cosine" else open_rs_verdict


@functools.cache
def _extractive_configs():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    gold = [LatexExtractionConfig(), ExprExtractionConfig()]
    pred = [ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0)]
    return gold, pred


@functools.lru_cache(maxsize=4096)
def _parse_extractive_gold(gold: str):
    from math_verify import parse

    return parse(gold, extraction_config=_extractive_configs()[0], extraction_mode="first_match")


EXTRACTIVE_MATCH_PRECISION = 5


def extractive_match_verdict(prediction: str, golds: Sequence[str]) -> Verdict:
    """The corrected evaluation grader (``--grader jgrpo``; rules 1, 2, 3 and 5): lighteval's
    configs on the installed math-verify (gold: LaTeX then expression; prediction: expression
    then LaTeX with ``\\boxed`` first; first match; 5 decimals), applied to the prediction's
    final box when it has one, with e-notation read as powers of ten and numbers compared with
    a relative tolerance. Correct if the prediction matches any gold. Pass golds through
    :func:`normalize_gold` first."""
    from math_verify import parse, verify

    pred_parsed = parse(
        final_answer_text(prediction), extraction_config=_extractive_configs()[1],
        extraction_mode="first_match",
    )
    for gold in golds:
        gold_parsed = _parse_extractive_gold(gold)
        if _verify_corrected(verify, gold_parsed, pred_parsed, float_rounding=EXTRACTIVE_MATCH_PRECISION):
            return Verdict.CORRECT
    return Verdict.WRONG


def warm_up() -> None:
    """Run both graders once, so that a fresh worker's first item does not pay for
    imports and parser set-up inside its deadline."""
    open_rs_verdict("$\\boxed{\\frac{1}{2}}$", "$0.5$")
    jgrpo_verdict("$\\boxed{\\frac{1}{2}}$", "$0.5$")
    extractive_match_verdict("$\\boxed{1}$", ("\\boxed{1}",))
    lighteval_verdict("$\\boxed{1}$", "$1$", "latex")


# ---------------------------------------------------------------------------------------
# Process pool with a per-item deadline
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Result of one item: ``status`` is "ok" (``value`` set), "timeout", "error" (``fn`` raised)
    or "crashed" (the worker died on it)."""

    status: str
    value: Any = None
    error: str | None = None


def _worker_loop(
    conn: multiprocessing.connection.Connection, initializer: Callable[[], None] | None
) -> None:
    try:
        if initializer is not None:
            initializer()
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        fn, args = message
        try:
            reply = ("ok", fn(*args))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result
            conn.send(("error", f"result not sendable: {type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, ctx: multiprocessing.context.BaseContext, initializer):
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_loop, args=(child_conn, initializer), daemon=True
        )
        self.process.start()
        child_conn.close()
        self.started = time.monotonic()
        self.ready = False

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _default_num_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


class GraderPool:
    """Runs ``fn(*args)`` for many items in worker processes, each within a deadline.

    Workers start on first use, run ``initializer`` once, and are reused across calls. The
    deadline counts from when a ready worker picks an item up, so start-up never eats into
    it. An item that runs past the deadline gets a "timeout" outcome and its worker is
    killed and replaced; a worker that dies gets a "crashed" outcome and is replaced. ``fn``
    and ``initializer`` must be picklable by reference (module-level functions). One
    ``map`` at a time: the pool is not thread-safe.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        deadline_s: float = 10.0,
        start_method: str = "forkserver",
        initializer: Callable[[], None] | None = None,
        startup_timeout_s: float = 120.0,
    ):
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        self.num_workers = num_workers or _default_num_workers()
        self.deadline_s = deadline_s
        self.startup_timeout_s = startup_timeout_s
        self._initializer = initializer
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # Replacing a killed worker then costs a fork, not a fresh sympy import.
            self._ctx.set_forkserver_preload([__name__, "math_verify", "jgrpo.rewards._vendor.math_verify"])
        self._workers: list[_Worker] = []
        self.workers_replaced = 0

    def map(self, fn: Callable, items: Sequence[tuple]) -> list[Outcome]:
        if not self._workers:
            self._workers = [self._new_worker() for _ in range(self.num_workers)]
        outcomes: list[Outcome | None] = [None] * len(items)
        pending = deque(enumerate(items))
        running: dict[int, tuple[int, float]] = {}  # worker slot -> (item index, start)
        try:
            while pending or running:
                for slot, worker in enumerate(self._workers):
                    if worker.ready and slot not in running and pending:
                        index, args = pending.popleft()
                        try:
                            worker.conn.send((fn, tuple(args)))
                        except OSError:  # it died while idle (e.g. killed for memory)
                            pending.appendleft((index, args))
                            self._replace(slot)
                            continue
                        running[slot] = (index, time.monotonic())
                self._wait(running, outcomes)
        except BaseException:
            # Busy workers would answer the next call with this call's results.
            for worker in self._workers:
                worker.kill()
            self._workers = []
            raise
        return outcomes  # type: ignore[return-value]

    def _wait(self, running: dict[int, tuple[int, float]], outcomes: list) -> None:
        """Wait for the next reply, start-up message or deadline, and handle it."""
        waiting = {
            w.conn: slot for slot, w in enumerate(self._workers) if slot in running or not w.ready
        }
        deadlines = [start + self.deadline_s for _, start in running.values()]
        deadlines += [w.started + self.startup_timeout_s for w in self._workers if not w.ready]
        timeout = max(0.0, min(deadlines) - time.monotonic())
        for conn in multiprocessing.connection.wait(list(waiting), timeout=timeout):
            slot = waiting[conn]
            worker = self._workers[slot]
            try:
                status, payload = conn.recv()
            except (EOFError, OSError):
                if not worker.ready:
                    raise RuntimeError("a grader worker exited during start-up") from None
                worker.process.join()
                outcomes[running.pop(slot)[0]] = Outcome(
                    "crashed", error=f"grader worker died (exit code {worker.process.exitcode})")
                self._replace(slot)
                continue
            if not worker.ready:
                if status != "ready":
                    raise RuntimeError(f"a grader worker failed to start: {payload}")
                worker.ready = True
                continue
            index, _ = running.pop(slot)
            outcomes[index] = (
                Outcome("ok", value=payload) if status == "ok" else Outcome("error", error=payload)
            )
        now = time.monotonic()
        for slot, (index, start) in list(running.items()):
            if now - start >= self.deadline_s:
                del running[slot]
                outcomes[index] = Outcome("timeout")
                self._replace(slot)
        for worker in self._workers:
            if not worker.ready and now - worker.started >= self.startup_timeout_s:
                raise RuntimeError(
                    f"a grader worker did not start within {self.startup_timeout_s} s"
                )

    def _new_worker(self) -> _Worker:
        return _Worker(self._ctx, self._initializer)

    def _replace(self, slot: int) -> None:
        self._workers[slot].kill()
        self._workers[slot] = self._new_worker()
        self.workers_replaced += 1

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def __enter__(self) -> GraderPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ---------------------------------------------------------------------------------------
# Grader: the graders above run in the pool
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradingOptions:
    """``mode`` picks the training rewards' correctness test: ``jgrpo`` (corrected, the default)
    or ``open-rs`` (the paper's, item for item; see the module docstring and EVALUATION.md).
    ``deadline_s`` bounds the grading of one completion; ``num_workers`` defaults to the usable
    cores (at most 8)."""

    num_workers: int | None = None
    deadline_s: float = 10.0
    start_method: str = "forkserver"
    # jgrpo: the corrected grader (final box, e-notation, relative tolerance); open-rs: the
    # paper's accuracy/cosine tests item for item (vendored math-verify 0.5.2)
    mode: str = "jgrpo"

    def __post_init__(self):
        check_choice("mode", self.mode, GRADING_MODES)


class Grader:
    """Grades completions in a reusable :class:`GraderPool`.

    Timeouts, grader errors and dead workers become ``Verdict.TIMEOUT`` / ``ERROR`` / ``CRASHED``; count them
    with :func:`count_verdicts` for logging.
    """

    def __init__(self, options: GradingOptions = GradingOptions()):
        self.options = options
        self._pool = GraderPool(
            options.num_workers, options.deadline_s, options.start_method, initializer=warm_up
        )

    def grade_open_rs(
        self, completions: Sequence[str], golds: Sequence[str], reward: str = "accuracy"
    ) -> list[Verdict]:
        """The training correctness test of ``reward`` ("accuracy" or "cosine") in
        ``options.mode``."""
        _check_lengths(completions, golds)
        return self._run(training_verdict_fn(self.options.mode, reward), list(zip(completions, golds)))

    def grade_lighteval(
        self, predictions: Sequence[str], golds: Sequence[tuple[str, str]]
    ) -> list[Verdict]:
        """lighteval's extractive match (:func:`lighteval_verdict`); ``golds[i]`` is
        (gold text, "expr" or "latex"), see :func:`lighteval_gold`."""
        _check_lengths(predictions, golds)
        return self._run(lighteval_verdict, [(p, g, k) for p, (g, k) in zip(predictions, golds)])

    def grade_extractive(
        self, predictions: Sequence[str], golds: Sequence[Sequence[str]]
    ) -> list[Verdict]:
        _check_lengths(predictions, golds)
        return self._run(
            extractive_match_verdict, [(p, tuple(g)) for p, g in zip(predictions, golds)]
        )

    def _run(self, fn: Callable, items: list[tuple]) -> list[Verdict]:
        verdicts = []
        for outcome in self._pool.map(fn, items):
            if outcome.status == "ok":
                verdicts.append(outcome.value)
            elif outcome.status == "timeout":
                verdicts.append(Verdict.TIMEOUT)
            elif outcome.status == "crashed":
                verdicts.append(Verdict.CRASHED)
            else:
                verdicts.append(Verdict.ERROR)
        return verdicts

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def count_verdicts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """Count of every verdict kind (zeros included), keyed by its value."""
    counts = Counter(verdicts)
    return {verdict.value: counts.get(verdict, 0) for verdict in Verdict}


def _check_lengths(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"got {len(a)} completions but {len(b)} golds")
