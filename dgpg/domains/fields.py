"""Checks of a configuration's fields, for the `__post_init__` of a domain's configuration:
each raises a one-line ValueError naming the field. JAX-free."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def require_int(config: Any, name: str, low: int) -> None:
    """`config.name` is an integer >= `low` (a bool is not)."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r:.40}")


def require_number(config: Any, name: str, low: float, high: float, low_open: bool = False,
                   high_open: bool = False) -> None:
    """`config.name` is a finite number in the interval from `low` to `high`, each end open or
    closed as given."""
    value = getattr(config, name)
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r:.40}")
