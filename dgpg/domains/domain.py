"""`Domain`: the pure functions of an environment family that the learners call.

    state = domain.reset(key, config)
    obs = domain.observe(state, config)                  # an `Observation`, (N, J, K) decisions
    state, reward, metrics = domain.step(key, state, actions, config)
    entities, context = domain.global_state(state, config)   # the central critic's input
    features = domain.pair_features(obs, derived)        # (..., N, J, K, F), the scorer's input
    model = domain.make_model(name, config)              # an `AnalyticalModel`
    actions = domain.heuristics[name](key, state, config)

`config` is the domain's configuration (a static argument of `jit`), `key` a JAX PRNG key,
`state` a pytree of arrays, `actions` (N, J) int32 in [0, K), `reward` a float32 scalar (the
team reward of the step) and `metrics` a dict of float scalars; the learners add
`metrics["reward"]` themselves. Names (models, heuristics) are the spec's (`DomainSpec`).
`dgpg.domains.check_domain` tests a domain against this contract.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from dgpg.domains.spec import DomainError, DomainSpec, load_object


def _default_episode_metrics(step_metrics: dict[str, Any]) -> dict[str, Any]:
    """`return`, the episode's summed reward, then every other per-step metric's mean."""
    import jax.numpy as jnp

    return {"return": jnp.sum(step_metrics["reward"], axis=0),
            **{k: jnp.mean(v, axis=0) for k, v in step_metrics.items() if k != "reward"}}


@dataclasses.dataclass(frozen=True)
class Domain:
    """The pure functions of one domain (see the module docstring) and its spec."""

    spec: DomainSpec
    reset: Callable[..., Any]
    """`(key, config) -> state`: a new episode's first state, from a scenario key."""
    step: Callable[..., Any]
    """`(key, state, actions (N, J), config) -> (state, reward (), metrics {name: ()})`."""
    observe: Callable[..., Any]
    """`(state, config) -> Observation`: every agent's local observation."""
    global_state: Callable[..., Any]
    """`(state, config) -> (entities (E, F), context (Fx,))`: the central critic's input."""
    pair_features: Callable[..., Any]
    """`(obs, derived=True) -> (..., N, J, K, F)`; `derived=False` keeps the observation's own
    features only (the `scorer-raw` actor)."""
    train_metrics: tuple[str, ...] = ()
    """Per-step metrics of `step` whose episode means the training log records (metrics.csv
    columns after `return`)."""
    episode_metrics: Callable[[dict[str, Any]], dict[str, Any]] = _default_episode_metrics
    """One episode's per-step metrics (arrays (T,), `reward` among them) -> its summary metrics,
    `return` first (default: the summed reward, then every metric's mean)."""
    slot_capacity: Callable[[int, Any], int] | None = None
    """`(rows, config) -> C`: decisions pending among `rows` agent-steps, bounded with a margin
    (the compacted actor's buffer size; `dgpg.learners.compaction`). The default, every slot
    (rows * J), is always safe."""

    def __post_init__(self) -> None:
        if self.slot_capacity is None:
            object.__setattr__(self, "slot_capacity", self._every_slot)

    def _every_slot(self, rows: int, config: Any) -> int:
        return rows * self.decision_shape(config)[0]

    def decision_shape(self, config: Any) -> tuple[int, int]:
        """(J, K): the slots per agent and candidates per slot of `config`, from the fields the
        spec names; a spec that names none (DeprecationWarning) has them read off the shape of
        the observation (`jax.eval_shape`, nothing is computed)."""
        spec = self.spec
        if spec.slots_per_agent is not None and spec.candidates_per_slot is not None:
            return (int(getattr(config, spec.slots_per_agent)),
                    int(getattr(config, spec.candidates_per_slot)))
        warnings.warn(f"domain {self.name}: its DomainSpec should name the configuration's "
                      "fields of J and K (slots_per_agent=..., candidates_per_slot=...); they "
                      "are read off the observation's shape until then", DeprecationWarning,
                      stacklevel=2)
        return _observed_shape(self, config)

    @classmethod
    def from_module(cls, spec: DomainSpec, module: Any, **fields: Any) -> Domain:
        """The Domain whose functions are those of the same names in `module` (an env module:
        reset, step, observe, global_state, pair_features, and slot_capacity and
        episode_metrics where it defines them); `fields` adds or replaces any of them."""
        names = [f.name for f in dataclasses.fields(cls)
                 if f.name not in ("spec", "train_metrics")]
        found = {name: getattr(module, name) for name in names if hasattr(module, name)}
        return cls(spec=spec, **{**found, **fields})

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def reference(self) -> str:
        """The heuristic every run is compared with."""
        return self.spec.reference

    @functools.cached_property
    def config_type(self) -> type:
        return self.spec.config_type()

    @functools.cached_property
    def heuristics(self) -> Mapping[str, Callable[..., Any]]:
        """Name -> `(key, state, config) -> actions (N, J)`, in the spec's order."""
        return {name: load_object(path, f"heuristic {name!r} of domain {self.name}")
                for name, path in self.spec.heuristics.items()}

    def make_model(self, name: str | None, config: Any) -> Any:
        """The analytical model `name` (None: the domain's default) for `config`; DomainError
        naming the domain's models if it has none of that name."""
        name = self.spec.default_model if name is None else name
        if not isinstance(name, str) or name not in self.spec.models:
            raise DomainError(f"unknown model {name!r:.40} in the {self.name} domain; known: "
                              f"{', '.join(self.spec.models)}")
        return load_object(self.spec.models[name], f"model {name!r} of domain {self.name}")(
            config)


_observed_shapes: dict[tuple[str, Any], tuple[int, int]] = {}


def _observed_shape(domain: Domain, config: Any) -> tuple[int, int]:
    """(J, K) read off the shape of the first observation of `config`."""
    key = (domain.name, config)
    if key not in _observed_shapes:
        import jax

        def observe_first(rng):
            return domain.observe(domain.reset(rng, config), config)

        obs = jax.eval_shape(observe_first, jax.random.key(0))
        _observed_shapes[key] = (int(obs.slots.shape[-2]), int(obs.candidates.shape[-2]))
    return _observed_shapes[key]
