"""Analytical models that supply DG-PG's guidance: water-filling and its cloud reference."""

from dgpg.analytical.base import AnalyticalModel
from dgpg.analytical.cloud import CloudReference, WaterFillingModel
from dgpg.analytical.waterfill import potential, water_level, waterfill

__all__ = [
    "AnalyticalModel",
    "CloudReference",
    "WaterFillingModel",
    "potential",
    "water_level",
    "waterfill",
]
