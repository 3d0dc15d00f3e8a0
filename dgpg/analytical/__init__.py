"""Alias of HeteroCloud's water-filling (`dgpg.domains.cloud.waterfill`), a stable import path."""

from dgpg.domains.cloud.waterfill import potential, water_level, waterfill

__all__ = ["potential", "water_level", "waterfill"]
