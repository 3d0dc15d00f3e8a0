"""PowerGrid: flexible-load aggregators on IEEE test grids with DC power flow.

The folder holds the whole domain: `grid` (MATPOWER/PYPOWER cases, PTDFs, line limits) and
`dispatch` (economic dispatch, DC optimal power flow), `config` (JAX-free: the configuration,
the case's ratings and the agents' candidate buses), `env` (the pure environment), `model` (its
analytical model), `belief` (what a misspecified model believes, `--set model.error=E`),
`heuristics` and `domain` (its `Domain`); its experiment (`dgpg reproduce power`) lives in
`dgpg.experiments.power`. This module is its JAX-free declaration; its PettingZoo environment
is `dgpg.pettingzoo.parallel_env("power", ...)`, built from the `Domain`.
"""

from dgpg.domains.spec import DomainOption, DomainSpec

SPEC = DomainSpec(
    name="power",
    title="PowerGrid",
    summary="flexible-load aggregators place demand blocks on the buses of a congested grid",
    config=f"{__name__}.config:PowerConfig",
    domain=f"{__name__}.domain:DOMAIN",
    models={"aligned": f"{__name__}.model:AlignedPowerModel"},
    heuristics={
        "random": f"{__name__}.heuristics:random_buses",
        "nearest": f"{__name__}.heuristics:nearest",
        "cheapest-lmp": f"{__name__}.heuristics:cheapest_lmp",
        "model-greedy": f"{__name__}.heuristics:model_greedy",
        "central-optimum": f"{__name__}.heuristics:central_optimum",
    },
    slots_per_agent="blocks_per_step",
    candidates_per_slot="n_candidates",
    reference="central-optimum",
    gamma=0.0,
    model_errors={
        "systematic": "believed line ratings off by 1 + s E on the most loaded third of the "
                      "lines at base case and 1 - s E on the others (s = +1 for an even seed, "
                      "-1 for an odd one)",
        "random": "believed line ratings off by a seeded factor in [1 - E, 1 + E] per line",
        "outage": "ceil(10 E) lines, drawn by the seed from the ten most loaded at base case "
                  "(the grid kept connected), believed out of service, flows rerouted over the "
                  "reduced network; the grid keeps them",
    },
    table_metrics=("return", "gen_cost", "violation_mw", "unserved_mw", "binding_lines"),
    options=(DomainOption(
        flag="--case", field="case", metavar="NAME_OR_PATH", path=True,
        help="The grid: a PYPOWER case (case9, case14, case30, case39, case57, case118, "
             "case300) or a MATPOWER .m / JSON case file (default: case30; env.case)."),),
    sweep_key=f"{__name__}.config:sweep_key",
)
