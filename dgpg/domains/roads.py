"""RoadNet as a domain: `dgpg.envs.roads.env` (environment), `dgpg.envs.roads.model` (its model)
and `dgpg.envs.roads.heuristics` (its dispatchers)."""

from dgpg.domains import Domain
from dgpg.envs.roads import env
from dgpg.envs.roads.heuristics import HEURISTICS
from dgpg.envs.roads.model import make_model

DOMAIN = Domain(
    name="roads",
    config_type=env.RoadConfig,
    reset=env.reset,
    step=env.step,
    observe=env.observe,
    global_state=env.global_state,
    pair_features=env.pair_features,
    slot_capacity=env.slot_capacity,
    train_metrics=("gap", "overload"),
    episode_metrics=env.episode_metrics,
    make_model=make_model,
    heuristics=HEURISTICS,
    reference="so-sample",
)
