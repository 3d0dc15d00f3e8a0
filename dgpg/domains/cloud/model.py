"""HeteroCloud's analytical models, the factories its spec names (`dgpg.domains.cloud.SPEC`).

    aligned        the reward's own cost, each placement weighted by the steps the job runs
                   there, the other jobs of the step at their expected placements under the
                   current policy (the default; `dgpg.domains.cloud.aligned`)
    aligned-state  the same with the other jobs absent (the current state)
    aligned-step   the same as `aligned` with the one-step cost (no lifetime weighting)
    fluid          the first design: water-filling reference p*, kept for ablation
                   (`dgpg.domains.cloud.fluid`)
"""

from dgpg.domains.cloud.aligned import AlignedModel
from dgpg.domains.cloud.config import EnvConfig
from dgpg.domains.cloud.fluid import WaterFillingModel


def aligned(config: EnvConfig) -> AlignedModel:
    return AlignedModel(config, stand_in="mean-field", horizon="lifetime")


def calibrated(config: EnvConfig) -> AlignedModel:
    """The aligned model with its belief corrected by the servers' measured efficiency."""
    return AlignedModel(config, stand_in="mean-field", horizon="lifetime", calibrate=True)


def aligned_state(config: EnvConfig) -> AlignedModel:
    return AlignedModel(config, stand_in="state", horizon="lifetime")


def aligned_step(config: EnvConfig) -> AlignedModel:
    return AlignedModel(config, stand_in="mean-field", horizon="step")


def fluid(config: EnvConfig) -> WaterFillingModel:
    return WaterFillingModel(config)
