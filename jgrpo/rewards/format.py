"""Format rewards: open-rs's, upstream open-r1's, and the tag counter."""

from __future__ import annotations

import re

_OPEN_R1_FORMAT = re.compile(
    r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL | re.MULTILINE
)


def format_reward(completions: list[str], **columns) -> list[float]:
    """open-rs: 1.0 iff the completion closes the (prefilled) thinking block exactly once,
    i.e. contains ``"\\n</think>\\n"`` exactly once. ``<answer>`` tags are not checked."""
    return [1.0 if c.count("\n</think>\n") == 1 else 0.0 for c in completions]


def format_open_r1_reward(completions: list[str], **columns) -> list[float]:
    """Upstream open-r1: the completion is
    ``<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>``.

    With the R1 chat template ``<think>\\n`` is part of the prompt, so completions rarely
    start with it: this variant is for templates that do not prefill it.
    """
    return [1.0 if _OPEN_R1_FORMAT.match(c) else 0.0 for c in completions]


def tag_count_reward(completions: list[str], **columns) -> list[float]:
    """open-rs's tag count: 0.5 for exactly one ``"<think>\\n"``, 0.5 for exactly one
    ``"\\n</think>\\n"``."""
    return [
        0.5 * (c.count("<think>\n") == 1) + 0.5 * (c.count("\n</think>\n") == 1)
        for c in completions
    ]
