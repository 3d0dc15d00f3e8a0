"""HeteroCloud's own experiments: figure 1 (the workload's characteristics), the calibration
of the arrival rate and figure 4's panel on public cluster traces. JAX-free."""

DOMAIN = "cloud"
EXPERIMENTS = {"fig1": f"{__name__}.fig1", "traces": f"{__name__}.traces"}
"""Experiment name -> module of `dgpg reproduce`."""
