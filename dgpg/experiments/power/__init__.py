"""PowerGrid's own experiment: DG-PG, MAPPO and IPPO place flexible demand on IEEE grids
(`power`). JAX-free."""

DOMAIN = "power"
EXPERIMENTS = {"power": f"{__name__}.placement"}
"""Experiment name -> module of `dgpg reproduce`."""
