"""RoadNet's own experiments: DG-PG, MAPPO and IPPO route traffic (`roads`), and the actor
ablation on Sioux Falls (`roads-actors`). JAX-free."""

DOMAIN = "roads"
EXPERIMENTS = {"roads": f"{__name__}.routing", "roads-actors": f"{__name__}.actors"}
"""Experiment name -> module of `dgpg reproduce`."""
