"""Machines: N dispatchers send jobs to K of M shared machines with a convex congestion cost.

This module is the domain's declaration: JAX-free, so that the command line checks names and
options before JAX loads. Its functions live in `dgpg_machines.env`.
"""

from dgpg.domains import DomainSpec

SPEC = DomainSpec(
    name="machines",
    title="Machines",
    summary="dispatchers share machines; the cost of a machine is its load squared over speed",
    config=f"{__name__}.config:MachinesConfig",
    domain=f"{__name__}.env:DOMAIN",
    models={"aligned": f"{__name__}.env:AlignedModel"},
    heuristics={"random": f"{__name__}.env:random_choice", "greedy": f"{__name__}.env:greedy"},
    reference="greedy",
    table_metrics=("return", "cost", "peak"),
)
