"""HeteroCloud as a domain: `dgpg.envs.cloud` (environment), `dgpg.analytical` (its models) and
`dgpg.heuristics` (its dispatchers)."""

from dgpg.analytical import make_model
from dgpg.domains import Domain
from dgpg.envs import cloud
from dgpg.heuristics import HEURISTICS

DOMAIN = Domain(
    name="cloud",
    config_type=cloud.EnvConfig,
    reset=cloud.reset,
    step=cloud.step,
    observe=cloud.observe,
    global_state=cloud.global_state,
    pair_features=cloud.pair_features,
    slot_capacity=cloud.slot_capacity,
    train_metrics=("imbalance", "overload", "drop_rate"),
    episode_metrics=cloud.episode_metrics,
    make_model=make_model,
    heuristics=HEURISTICS,
    reference="best-fit-central",
)
