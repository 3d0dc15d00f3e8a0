"""RoadNet: static traffic assignment on road networks with BPR latencies.

The folder holds the whole domain: `network` (the network and its TNTP loader), `config`
(JAX-free), `links` and `system_optimum` (flows and the period's optimum), `assignment` (the
user-equilibrium and system-optimum solvers), `env` (the pure environment), `model` (its
analytical model), `heuristics` and `domain` (its `Domain`); its experiments (`dgpg reproduce
roads`, `roads-actors`) live in `dgpg.experiments.roads`. This module is its JAX-free
declaration; its PettingZoo environment is `dgpg.pettingzoo.parallel_env("roads", ...)`, built
from the `Domain`.
"""

from dgpg.domains.spec import DomainOption, DomainSpec

SPEC = DomainSpec(
    name="roads",
    title="RoadNet",
    summary="OD-pair agents route platoons over candidate paths of a congested road network",
    config=f"{__name__}.config:RoadConfig",
    domain=f"{__name__}.domain:DOMAIN",
    models={"calibrated": f"{__name__}.model:CalibratedRoadModel",  # the default
            "aligned": f"{__name__}.model:AlignedRoadModel"},
    heuristics={
        "free-flow": f"{__name__}.heuristics:free_flow",
        "fastest": f"{__name__}.heuristics:fastest",
        "random": f"{__name__}.heuristics:random_paths",
        "so-sample": f"{__name__}.heuristics:so_sample",
        "model-greedy": f"{__name__}.heuristics:model_greedy",
    },
    slots_per_agent="jobs_per_step",
    candidates_per_slot="n_candidates",
    reference="so-sample",
    gamma=0.0,
    train_defaults={"agents_per_minibatch": 1024},  # every agent on Sioux Falls
    model_errors={
        "systematic": "believed link free-flow time t0 (1 - E u) and capacity c (1 + E u) per "
                      "capacity class (u = +1 on links below the mean capacity, -1 on the "
                      "others: seed 0 believes the big roads slower and smaller; an odd seed "
                      "flips the sign)",
        "random": "believed link free-flow time and capacity off by independent seeded factors "
                  "in [1 - E, 1 + E] per link",
    },
    table_metrics=("return", "mean_travel_time", "so_ratio", "gap", "overload"),
    options=(DomainOption(
        flag="--network", field="network", metavar="PATH_PREFIX", path=True,
        help="The TNTP network with files PATH_PREFIX_net.tntp and PATH_PREFIX_trips.tntp "
             "(default: the generated grid city; env.network)."),),
    sweep_key=f"{__name__}.config:sweep_key",
)
