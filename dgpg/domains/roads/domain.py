"""RoadNet's `Domain`: the pure functions of `dgpg.domains.roads.env`."""

from dgpg.domains import Domain
from dgpg.domains.roads import SPEC, env

DOMAIN = Domain.from_module(SPEC, env, train_metrics=("gap", "overload"))
