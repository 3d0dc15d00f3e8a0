"""HeteroCloud's `Domain`: the pure functions of `dgpg.domains.cloud.env`."""

from dgpg.domains import Domain
from dgpg.domains.cloud import SPEC, env

DOMAIN = Domain.from_module(SPEC, env, train_metrics=("imbalance", "overload", "drop_rate"))
