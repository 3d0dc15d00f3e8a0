"""Checks of a configuration's fields, for the `__post_init__` of a domain's configuration:
each raises a one-line ValueError naming the field; and the fields of a misspecified model
(`MODEL_ERROR_FIELDS`, `truth`). JAX-free."""

from __future__ import annotations

import dataclasses
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


def require_model_error(config: Any, kinds: tuple[str, ...]) -> None:
    """The misspecification fields of `config` (`MODEL_ERROR_FIELDS`), checked and stored as
    plain Python values: model_error a number in [0, 1), model_error_kind one of `kinds`,
    model_error_seed an integer >= 0 (for a frozen dataclass's `__post_init__`)."""
    value = config.model_error
    try:
        number = (not isinstance(value, bool) and isinstance(value, int | float | np.number)
                  and 0.0 <= float(value) < 1.0)
    except OverflowError:  # an integer too large for a float
        number = False
    if not number:
        raise ValueError(f"model_error must be a number in [0, 1), got {value!r:.40}")
    object.__setattr__(config, "model_error", float(value))
    if not isinstance(config.model_error_kind, str) or config.model_error_kind not in kinds:
        raise ValueError(f"model_error_kind must be one of {', '.join(kinds)}, got "
                         f"{config.model_error_kind!r:.40}")
    require_int(config, "model_error_seed", 0)
    if config.model_error_seed > 2**31 - 1:
        raise ValueError(f"model_error_seed must be < 2**31, got {config.model_error_seed!r:.40}")
    object.__setattr__(config, "model_error_seed", int(config.model_error_seed))


MODEL_ERROR_FIELDS = ("model_error", "model_error_kind", "model_error_seed")
"""The configuration fields of a domain with misspecification families (`DomainSpec.model_errors`):
E, the relative size (0 = the exact model), the family's name and its seed."""


def truth(config: Any) -> Any:
    """`config` with the exact model (model_error = 0): what the environment and the reference
    heuristic, the yardstick of every run, see. Unchanged for a domain without model errors."""
    if getattr(config, "model_error", 0.0):
        return dataclasses.replace(config, model_error=0.0)
    return config
