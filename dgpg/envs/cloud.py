"""Alias of `dgpg.domains.cloud.env` (HeteroCloud's environment and its inspection helpers
`sample_jobs`, `make_scenario`, `arrival_rate`), a stable import path."""

from dgpg.domains.cloud.env import *  # noqa: F403
from dgpg.domains.cloud.env import arrival_rate, make_scenario, sample_jobs  # noqa: F401
