"""Math answer grading with math-verify, bounded in time.

Two graders, both run in worker processes by :class:`Grader`:

* :func:`open_rs_verdict` is the correctness test of open-rs's ``accuracy`` and ``cosine``
  rewards (used in training).
* :func:`extractive_match_verdict` is lighteval's extractive match as open-rs's evaluation
  used it (used for benchmarks).

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
import multiprocessing
import multiprocessing.connection
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class Verdict(enum.StrEnum):
    CORRECT = "correct"
    WRONG = "wrong"
    # open-rs rewards an unparseable gold with 1.0 instead of skipping the sample.
    GOLD_UNPARSEABLE = "gold_unparseable"
    TIMEOUT = "timeout"
    ERROR = "error"


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


@functools.cache
def _open_rs_configs():
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig

    gold = [LatexExtractionConfig()]
    # open-rs passes equations=True; latex2sympy2_extended >= 1.0 ignores it apart from
    # logging a deprecation warning on every call, so it is left at its default.
    pred = [
        LatexExtractionConfig(
            normalization_config=NormalizationConfig(
                nits=False,
                malformed_operators=False,
                basic_latex=True,
                boxed="all",
                units=True,
            ),
            boxed_match_priority=0,
            try_extract_without_anchor=False,
        )
    ]
    return gold, pred


# A group's completions share one gold: parse it once per worker.
@functools.lru_cache(maxsize=4096)
def _parse_open_rs_gold(gold: str):
    from math_verify import parse

    return parse(gold, extraction_config=_open_rs_configs()[0], extraction_mode="first_match")


def open_rs_verdict(completion: str, gold: str) -> Verdict:
    """open-rs's correctness test: is the completion's boxed answer equal to the gold?

    Gold: LaTeX extraction with math-verify's default config. Prediction: LaTeX only,
    ``\\boxed`` first, no anchor-less fallback, first match. A failing ``verify`` counts as
    wrong, as in open-rs.
    """
    from math_verify import parse, verify

    gold_parsed = _parse_open_rs_gold(gold)
    if not gold_parsed:
        return Verdict.GOLD_UNPARSEABLE
    pred_parsed = parse(
        completion, extraction_config=_open_rs_configs()[1], extraction_mode="first_match"
    )
    try:
        return Verdict.CORRECT if verify(pred_parsed, gold_parsed) else Verdict.WRONG
    except Exception:
        return Verdict.WRONG


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
    """lighteval's math extractive match: correct if the prediction matches any gold.

    Gold: LaTeX then expression extraction. Prediction: expression then LaTeX with
    ``\\boxed`` first. First match; numbers compared at 5 decimals. Pass golds through
    :func:`normalize_gold` first.
    """
    from math_verify import parse, verify

    pred_parsed = parse(
        prediction, extraction_config=_extractive_configs()[1], extraction_mode="first_match"
    )
    for gold in golds:
        gold_parsed = _parse_extractive_gold(gold)
        if verify(gold_parsed, pred_parsed, float_rounding=EXTRACTIVE_MATCH_PRECISION):
            return Verdict.CORRECT
    return Verdict.WRONG


# ---------------------------------------------------------------------------------------
# Process pool with a per-item deadline
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Result of one item: ``status`` is "ok" (``value`` set), "timeout" or "error"."""

    status: str
    value: Any = None
    error: str | None = None


def _worker_loop(conn: multiprocessing.connection.Connection) -> None:
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
    def __init__(self, ctx: multiprocessing.context.BaseContext):
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_worker_loop, args=(child_conn,), daemon=True)
        self.process.start()
        child_conn.close()

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

    Workers start on first use and are reused across calls. An item that runs past the
    deadline (measured from when a worker picks it up) gets a "timeout" outcome and its
    worker is killed and replaced; a worker that dies gets an "error" outcome and is
    replaced. ``fn`` must be picklable by reference (a module-level function).
    """

    def __init__(
        self,
        num_workers: int | None = None,
        deadline_s: float = 10.0,
        start_method: str = "forkserver",
    ):
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        self.num_workers = num_workers or _default_num_workers()
        self.deadline_s = deadline_s
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # Replacing a killed worker then costs a fork, not a fresh sympy import.
            self._ctx.set_forkserver_preload([__name__, "math_verify"])
        self._workers: list[_Worker] = []
        self.workers_replaced = 0

    def map(self, fn: Callable, items: Sequence[tuple]) -> list[Outcome]:
        if not self._workers:
            self._workers = [_Worker(self._ctx) for _ in range(self.num_workers)]
        outcomes: list[Outcome | None] = [None] * len(items)
        pending = deque(enumerate(items))
        running: dict[int, tuple[int, float]] = {}  # worker slot -> (item index, start)
        while pending or running:
            for slot in range(len(self._workers)):
                if slot not in running and pending:
                    index, args = pending.popleft()
                    self._send(slot, (fn, tuple(args)))
                    running[slot] = (index, time.monotonic())
            first_deadline = min(start for _, start in running.values()) + self.deadline_s
            conns = {self._workers[slot].conn: slot for slot in running}
            ready = multiprocessing.connection.wait(
                list(conns), timeout=max(0.0, first_deadline - time.monotonic())
            )
            for conn in ready:
                slot = conns[conn]
                index, _ = running.pop(slot)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    outcomes[index] = Outcome("error", error="grader worker died")
                    self._replace(slot)
                    continue
                if status == "ok":
                    outcomes[index] = Outcome("ok", value=payload)
                else:
                    outcomes[index] = Outcome("error", error=payload)
            now = time.monotonic()
            for slot, (index, start) in list(running.items()):
                if now - start >= self.deadline_s:
                    del running[slot]
                    outcomes[index] = Outcome("timeout")
                    self._replace(slot)
        return outcomes  # type: ignore[return-value]

    def _send(self, slot: int, message: tuple) -> None:
        try:
            self._workers[slot].conn.send(message)
        except OSError:  # the idle worker died (e.g. killed for memory): retry on a new one
            self._replace(slot)
            self._workers[slot].conn.send(message)

    def _replace(self, slot: int) -> None:
        self._workers[slot].kill()
        self._workers[slot] = _Worker(self._ctx)
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
    """``deadline_s`` bounds the grading of one completion; ``num_workers`` defaults to the
    usable cores (at most 8)."""

    num_workers: int | None = None
    deadline_s: float = 10.0
    start_method: str = "forkserver"


class Grader:
    """Grades completions in a reusable :class:`GraderPool`.

    Timeouts and worker errors become ``Verdict.TIMEOUT`` / ``Verdict.ERROR``; count them
    with :func:`count_verdicts` for logging.
    """

    def __init__(self, options: GradingOptions = GradingOptions()):
        self.options = options
        self._pool = GraderPool(options.num_workers, options.deadline_s, options.start_method)

    def grade_open_rs(self, completions: Sequence[str], golds: Sequence[str]) -> list[Verdict]:
        _check_lengths(completions, golds)
        return self._run(open_rs_verdict, list(zip(completions, golds)))

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
