"""RoadNet's `Domain`: the pure functions of `dgpg.domains.roads.env`."""

from dgpg.domains import Domain
from dgpg.domains.roads import SPEC, env

DOMAIN = Domain(
    spec=SPEC,
    reset=env.reset,
    step=env.step,
    observe=env.observe,
    global_state=env.global_state,
    pair_features=env.pair_features,
    slot_capacity=env.slot_capacity,
    train_metrics=("gap", "overload"),
    episode_metrics=env.episode_metrics,
)
