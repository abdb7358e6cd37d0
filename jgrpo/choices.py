"""The one check of a value against the names a setting allows, so every such error reads the same."""

from __future__ import annotations

from collections.abc import Sequence


def check_choice(name: str, value, allowed: Sequence[str]) -> None:
    """ValueError naming the setting, the value given and the allowed ones, when `value` is not one."""
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")
