"""Reward functions that misbehave, for the fault tests (tests/test_faults.py): named by import
path in --rewards.funcs, as a user's own reward functions are."""

import math


def infinite(completions, **_):
    """An overflow in a user's reward: every completion gets +inf."""
    return [math.inf for _ in completions]
