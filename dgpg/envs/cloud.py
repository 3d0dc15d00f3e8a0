"""Deprecated alias of `dgpg.domains.cloud.env` (HeteroCloud's environment and its inspection
helpers `sample_jobs`, `make_scenario`, `arrival_rate`): each name read from here warns. It will
be removed in the next release."""

import warnings
from typing import Any

from dgpg.domains.cloud import env as _env

__all__ = sorted(name for name in vars(_env) if not name.startswith("_"))


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn("dgpg.envs.cloud is deprecated and will be removed in the next release; import "
                  "dgpg.domains.cloud.env instead", DeprecationWarning, stacklevel=2)
    return getattr(_env, name)
