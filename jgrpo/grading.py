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


def warm_up() -> None:
    """Run both graders once, so that a fresh worker's first item does not pay for
    imports and parser set-up inside its deadline."""
    open_rs_verdict("$\\boxed{\\frac{1}{2}}$", "$0.5$")
    extractive_match_verdict("$\\boxed{1}$", ("\\boxed{1}",))


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
            self._ctx.set_forkserver_preload([__name__, "math_verify"])
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
    """``deadline_s`` bounds the grading of one completion; ``num_workers`` defaults to the
    usable cores (at most 8)."""

    num_workers: int | None = None
    deadline_s: float = 10.0
    start_method: str = "forkserver"


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
