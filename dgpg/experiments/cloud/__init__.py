"""HeteroCloud's own experiments: figure 1 (the workload's characteristics) and the calibration
of the arrival rate. JAX-free."""

DOMAIN = "cloud"
EXPERIMENTS = {"fig1": f"{__name__}.fig1"}
"""Experiment name -> module of `dgpg reproduce`."""
