"""PowerGrid's `Domain`: the pure functions of `dgpg.domains.power.env`."""

from dgpg.domains import Domain
from dgpg.domains.power import SPEC, env

DOMAIN = Domain(
    spec=SPEC,
    reset=env.reset,
    step=env.step,
    observe=env.observe,
    global_state=env.global_state,
    pair_features=env.pair_features,
    slot_capacity=env.slot_capacity,
    train_metrics=("gen_cost", "violation_mw", "binding_lines"),
    episode_metrics=env.episode_metrics,
)
