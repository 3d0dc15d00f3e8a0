"""Deprecated alias of HeteroCloud's water-filling, `dgpg.domains.cloud.waterfill`: its names
warn when read from here. It will be removed in the next release."""

import warnings
from typing import Any

__all__ = ["potential", "water_level", "waterfill"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from dgpg.domains.cloud import waterfill

    warnings.warn(f"dgpg.analytical.{name} is deprecated and will be removed in the next "
                  f"release; use dgpg.domains.cloud.waterfill.{name}", DeprecationWarning,
                  stacklevel=2)
    return getattr(waterfill, name)
