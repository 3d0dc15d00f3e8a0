"""HeteroCloud: N dispatchers place jobs on M = 2N heterogeneous servers.

The folder holds the whole domain: `parameters`, `config` (JAX-free), `workload`, `scenario`,
`env` (the pure environment), the analytical models (`aligned`, `fluid`, `waterfill`,
`models`), `heuristics`, `domain` (its `Domain`) and its own experiments (`fig1`,
`calibration`). This module is its JAX-free declaration; its PettingZoo environment is
`dgpg.pettingzoo.parallel_env("cloud", ...)`, built from the `Domain`.
"""

from dgpg.domains.spec import DomainSpec

SPEC = DomainSpec(
    name="cloud",
    title="HeteroCloud",
    summary="job dispatch to heterogeneous servers under a tidal heavy-tailed workload",
    config=f"{__name__}.config:EnvConfig",
    domain=f"{__name__}.domain:DOMAIN",
    models={
        "aligned": f"{__name__}.models:aligned",
        "aligned-state": f"{__name__}.models:aligned_state",
        "aligned-step": f"{__name__}.models:aligned_step",
        "fluid": f"{__name__}.models:fluid",
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
    table_metrics=("return", "imbalance", "overload", "drop_rate", "slowdown", "throughput"),
)
