"""HeteroCloud: N dispatchers place jobs on M = 2N heterogeneous servers.

The folder holds the whole domain: `parameters`, `config` (JAX-free), `workload`, `scenario`,
`env` (the pure environment), the analytical models (`aligned`, `fluid`, `waterfill`, and
`model`, their factories), `heuristics` and `domain` (its `Domain`); its own experiments (figure
1, the calibration) live in `dgpg.experiments.cloud`. This module is its JAX-free declaration;
its PettingZoo environment is `dgpg.pettingzoo.parallel_env("cloud", ...)`, built from the
`Domain`.
"""

from dgpg.domains.spec import DomainSpec

SPEC = DomainSpec(
    name="cloud",
    title="HeteroCloud",
    summary="job dispatch to heterogeneous servers under a tidal heavy-tailed workload",
    config=f"{__name__}.config:EnvConfig",
    domain=f"{__name__}.domain:DOMAIN",
    models={
        "calibrated": f"{__name__}.model:calibrated",  # the default
        "aligned": f"{__name__}.model:aligned",
        "aligned-state": f"{__name__}.model:aligned_state",
        "aligned-step": f"{__name__}.model:aligned_step",
        "fluid": f"{__name__}.model:fluid",
    },
    heuristics={
        "random": f"{__name__}.heuristics:random_policy",
        "round-robin": f"{__name__}.heuristics:round_robin",
        "least-loaded": f"{__name__}.heuristics:least_loaded",
        "best-fit": f"{__name__}.heuristics:best_fit",
        "best-fit-central": f"{__name__}.heuristics:best_fit_central",
        "analytical": f"{__name__}.heuristics:analytical",
        "model-greedy": f"{__name__}.heuristics:model_greedy",
    },
    slots_per_agent="jobs_per_step",
    candidates_per_slot="n_candidates",
    reference="best-fit-central",
    model_errors={
        "systematic": "believed server efficiency off by 1 + E u_g per hardware generation g "
                      "(u a seeded permutation of +1, 0, -1)",
        "random": "believed server efficiency off by a seeded factor in [1 - E, 1 + E] per "
                  "server",
    },
    table_metrics=("return", "imbalance", "overload", "drop_rate", "slowdown", "throughput"),
)
