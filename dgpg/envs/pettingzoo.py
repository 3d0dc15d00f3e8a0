"""Alias of `dgpg.domains.cloud.pettingzoo` (HeteroCloud as a PettingZoo `ParallelEnv`), a
stable import path."""

from dgpg.domains.cloud.pettingzoo import *  # noqa: F403
from dgpg.domains.cloud.pettingzoo import parallel_env  # noqa: F401
