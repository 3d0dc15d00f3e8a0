"""PowerGrid's `Domain`: the pure functions of `dgpg.domains.power.env`."""

from dgpg.domains import Domain
from dgpg.domains.power import SPEC, env

DOMAIN = Domain.from_module(SPEC, env, train_metrics=("gen_cost", "violation_mw", "binding_lines"))
