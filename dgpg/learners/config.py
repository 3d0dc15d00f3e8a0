"""The learners' hyperparameters, `TrainConfig`, and the names it is checked against.

Importable without JAX, so that a configuration is checked before JAX loads;
`dgpg.learners.ppo` re-exports everything here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALGORITHMS = ("dgpg", "mappo", "ippo", "dr")
"""DG-PG; MAPPO and IPPO (no model); `dr`, PPO on modelled difference rewards (each agent's
advantage from the same analytical model DG-PG is guided by, the closest prior method)."""

MODEL_ALGORITHMS = ("dgpg", "dr")
"""The algorithms that use the domain's analytical model."""

ACTOR_NAMES = ("scorer", "scorer-raw", "mlp", "scorer-id")
"""The actors `dgpg.learners.networks.make_actor` builds: the pair scorer (default), the same
scorer without the derived after-placement features, an MLP over the flattened local
observation, and the scorer plus a learned logit offset per (agent, slot) (`IdActor`)."""

TRANSFERABLE_ACTORS = ("scorer", "scorer-raw", "mlp")

ALPHA_SCHEDULES = ("fixed", "linear", "adaptive")
"""How DG-PG's guidance weight moves over training (`TrainConfig.alpha_schedule`)."""

MODEL_RULE = "model-greedy"
"""The heuristic that acts on the analytical model's choices, where a domain declares one: the
adaptive weight's comparison and the model-error experiment's rule."""

GUIDANCE_SCALES = ("model", "slot")
"""How DG-PG's guidance loss is scaled (`TrainConfig.guidance_scale`)."""
"""The actors with no parameter that depends on N: a policy trained at one N acts at any."""

TUNED = {
    "dgpg": {"learning_rate": 1e-3, "ent_coef": 0.003},
    "mappo": {"learning_rate": 3e-3, "ent_coef": 0.01},
    "ippo": {"learning_rate": 1e-3, "ent_coef": 0.01},
    "dr": {"learning_rate": 1e-3, "ent_coef": 0.003},
}
"""Learning rate and entropy coefficient of each algorithm: the best validation return of the
first 3 x 3 sweep for each (N = 10, 20 episodes, 2 seeds, scored on the last episode alone).
`dgpg reproduce tuning` runs that grid again with a 5-episode score and picks other pairs
(results/tuning/tuning.md); every run below N = 50 was trained with these. Every other
hyperparameter is shared. `dgpg train` uses these; `TrainConfig()` alone has DG-PG's. `dr` has
DG-PG's pair until a sweep of its own picks one."""

TUNED_AT_SCALE = {
    "dgpg": {"learning_rate": 3e-3, "ent_coef": 0.003},
    "mappo": {"learning_rate": 1e-3, "ent_coef": 0.003},
    "ippo": {"learning_rate": 3e-3, "ent_coef": 0.0},
}
"""The same for N = 50 (100 episodes, 2 seeds; `dgpg reproduce tuning`, results/tuning): what
figure 4 trains with from N = 50 on."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters, identical for DG-PG, MAPPO and IPPO unless stated."""

    algo: str = "dgpg"
    """dgpg, mappo, ippo or dr (`ALGORITHMS`)."""
    alpha: float = 0.5
    """Guidance weight of DG-PG in [0, 1]; MAPPO and IPPO ignore it (weight 0)."""
    model: str | None = None
    """The analytical model of DG-PG and dr, one of the domain's (`DomainSpec.models`; None:
    the domain's default, its first); MAPPO and IPPO build none."""
    learning_rate: float = 1e-3
    """Adam step size, actor and critic."""
    ent_coef: float = 0.003
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value-loss coefficient."""
    clip_eps: float = 0.2
    """PPO ratio clipping."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    update_epochs: int = 4
    """Epochs over each episode's data."""
    num_minibatches: int = 4
    """Minibatches per epoch (split over time steps)."""
    agents_per_minibatch: int = 128
    """Agents sampled per minibatch for the actor and local-critic losses when N is larger:
    with parameter sharing this is an unbiased subsample, and it bounds the update's cost."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    hidden: int = 64
    """Width of every hidden layer."""
    actor: str = "scorer"
    """The actor network (ACTOR_NAMES), the same for every algorithm in a comparison."""
    id_scale: float = 50.0
    """`scorer-id` only: the logit offsets' scale; an Adam step moves an offset logit by about
    id_scale x learning_rate."""
    id_per_slot: bool = True
    """`scorer-id` only: one offset per (agent, slot, candidate); False, one per (agent,
    candidate) shared by the agent's slots."""
    alpha_schedule: str = "fixed"
    """DG-PG only: `fixed`, alpha in every episode; `linear`, alpha in the first episode down
    (or up) to `alpha_final` at episode `alpha_decay_episodes` + 1, then `alpha_final`, so that
    the policy gradient can take the policy past a wrong model's choices; `adaptive`, alpha
    while the model's own rule does at least as well as the policy on the validation scenarios,
    less as the policy gets ahead of it (`dgpg.learners.ppo.trust_weight`)."""
    trust_margin: float = 0.5
    """`adaptive` only: the policy's lead over the model's rule on the validation scenarios,
    as a fraction of the rule's cost, at which the guidance weight reaches 0."""
    alpha_final: float = 0.2
    """`linear` only: the guidance weight the schedule ends at, in [0, 1]."""
    alpha_decay_episodes: int = 20
    """`linear` only: the episodes over which the weight moves from alpha to alpha_final."""
    guidance_scale: str = "model"
    """DG-PG only: `model`, the model's guidance loss as it is (its gradient in its own cost
    units); `slot`, each slot's guidance gradient over its candidates rescaled to the range
    [0, 1] (the cheapest candidate 0, the dearest 1), so that the same alpha weighs the same
    whatever units a model's costs are in."""

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algo!r}; known: {', '.join(ALGORITHMS)}")
        if not (isinstance(self.alpha, int | float) and 0.0 <= self.alpha <= 1.0):
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.actor not in ACTOR_NAMES:
            known = ", ".join(ACTOR_NAMES)
            raise ValueError(f"actor must be one of {known}, got {self.actor!r:.40}")
        if self.model is not None and not isinstance(self.model, str):
            raise ValueError(f"model must be a model's name, got {self.model!r:.40}")
        if self.alpha_schedule not in ALPHA_SCHEDULES:
            raise ValueError(f"alpha_schedule must be one of {', '.join(ALPHA_SCHEDULES)}, got "
                             f"{self.alpha_schedule!r:.40}")
        if self.guidance_scale not in GUIDANCE_SCALES:
            raise ValueError(f"guidance_scale must be one of {', '.join(GUIDANCE_SCALES)}, got "
                             f"{self.guidance_scale!r:.40}")
        if not (isinstance(self.alpha_final, int | float) and 0.0 <= self.alpha_final <= 1.0):
            raise ValueError(f"alpha_final must be in [0, 1], got {self.alpha_final!r}")
        if not isinstance(self.id_per_slot, bool):
            raise ValueError(f"id_per_slot must be true or false, got {self.id_per_slot!r:.40}")
        for name in ("learning_rate", "ent_coef", "vf_coef", "clip_eps", "gamma", "gae_lambda",
                     "max_grad_norm", "id_scale", "trust_margin"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("update_epochs", "num_minibatches", "agents_per_minibatch", "hidden",
                     "alpha_decay_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def guidance_weight(self) -> float:
        """The guidance weight of the first episode (0 for MAPPO and IPPO)."""
        return self.alpha if self.algo == "dgpg" else 0.0

    def guidance_weight_at(self, episode: int) -> float:
        """The guidance weight of the training episode `episode` (0-based): `alpha_schedule`
        applied to alpha (0 for MAPPO and IPPO)."""
        if self.algo != "dgpg":
            return 0.0
        if self.alpha_schedule == "fixed":
            return self.alpha
        done = max(episode, 0) / self.alpha_decay_episodes
        if done >= 1:
            return self.alpha_final
        return self.alpha + (self.alpha_final - self.alpha) * done

    @property
    def uses_model(self) -> bool:
        """DG-PG and dr use the domain's analytical model (`MODEL_ALGORITHMS`)."""
        return self.algo in MODEL_ALGORITHMS

    @property
    def central_critic(self) -> bool:
        return self.algo != "ippo"
