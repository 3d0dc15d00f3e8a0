"""Analytical models that supply DG-PG's guidance, and the registry that names them.

    aligned        the reward's own cost, each placement weighted by the steps the job runs
                   there, the other jobs of the step at their expected placements under the
                   current policy (the default; `dgpg.analytical.aligned`)
    aligned-state  the same with the other jobs absent (the current state)
    aligned-step   the same as `aligned` with the one-step cost (no lifetime weighting)
    fluid          the first design: water-filling reference p*, kept for ablation
                   (`dgpg.analytical.cloud`)
"""

from collections.abc import Callable

from dgpg.analytical.aligned import AlignedModel, AlignedReference, greedy_placement
from dgpg.analytical.base import AnalyticalModel
from dgpg.analytical.cloud import CloudReference, WaterFillingModel
from dgpg.analytical.waterfill import potential, water_level, waterfill
from dgpg.domains import SPECS
from dgpg.learners.config import DEFAULT_MODEL

MODELS: dict[str, Callable[..., AnalyticalModel]] = {
    "aligned": lambda env: AlignedModel(env, stand_in="mean-field", horizon="lifetime"),
    "aligned-state": lambda env: AlignedModel(env, stand_in="state", horizon="lifetime"),
    "aligned-step": lambda env: AlignedModel(env, stand_in="mean-field", horizon="step"),
    "fluid": WaterFillingModel,
}
# the names are also listed where a configuration is checked without JAX
assert tuple(MODELS) == SPECS["cloud"].models, "dgpg.domains.SPECS must list every cloud model"


def make_model(name: str, env_config) -> AnalyticalModel:
    """The analytical model `name` for an environment configuration; ValueError if unknown."""
    try:
        factory = MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r:.40}; known: {', '.join(MODELS)}") from None
    return factory(env_config)


__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "AlignedModel",
    "AlignedReference",
    "AnalyticalModel",
    "CloudReference",
    "WaterFillingModel",
    "greedy_placement",
    "make_model",
    "potential",
    "water_level",
    "waterfill",
]
