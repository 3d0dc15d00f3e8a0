"""Charging, an example plug-in: N fleet operators send their vehicles (units of charging work)
to shared charging stations (resources); a station's waiting time grows as load^2 / capacity,
told in minutes. Its analytical model gives costs in those minutes, unscaled (`model.py`).

This module is the domain's declaration, a `DomainSpec`: every name the command line, sweeps and
figures know of the domain, each implementation named by its import path. It imports no JAX, so
that `dgpg train --domain charging` checks its input before JAX loads. The pure functions live in
`dgpg_charging.env`, the analytical model in `dgpg_charging.model`, the heuristics in
`dgpg_charging.heuristics`; the configuration in `dgpg_charging.config`.
"""

from dgpg.domains import DomainSpec

SPEC = DomainSpec(
    name="charging",
    title="Charging",
    summary="fleets send vehicles to shared charging stations; waiting in minutes",
    config=f"{__name__}.config:ChargingConfig",
    domain=f"{__name__}.env:DOMAIN",
    models={"marginal": f"{__name__}.model:MarginalCost"},  # the default model first
    heuristics={"random": f"{__name__}.heuristics:random_choice",
                "greedy": f"{__name__}.heuristics:greedy"},
    reference="greedy",
    slots_per_agent="units_per_step",  # J: the configuration's field
    candidates_per_slot="n_candidates",  # K: the configuration's property
    table_metrics=("return", "cost", "peak"),
)
