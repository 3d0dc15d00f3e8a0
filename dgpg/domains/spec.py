"""`DomainSpec`: everything the command line, sweeps and figures know of a domain before JAX loads.

A domain declares each of its names once, here: its analytical models (the default first), its
heuristics, the reference heuristic, the configuration's fields that hold the slots per agent
(J) and candidates per slot (K), the metrics of `dgpg evaluate`'s table, its extra
command-line options and domain-only experiments. Every implementation is named by an import
path "module:attribute" and imported on first use, so that a spec is cheap to import and a bad
name is refused in one line before any compilation. This module imports neither JAX nor a domain.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any


class DomainError(ValueError):
    """A domain that cannot be found, registered or loaded; the message is one line."""


def load_object(path: str, what: str = "object") -> Any:
    """The attribute named by "package.module:attribute"; DomainError (one line) otherwise."""
    module, sep, attribute = path.partition(":")
    if not sep or not module or not attribute:
        raise DomainError(f"{what} {path!r:.80} is not of the form 'module:attribute'")
    try:
        found = importlib.import_module(module)
    except Exception as e:  # a plug-in's own import error, whatever it is
        raise DomainError(f"cannot import {module!r} for {what} {path!r}: "
                          f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]) from None
    try:
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise DomainError(f"{what} {path!r}: {module!r} has no attribute {attribute!r}") from None
    return found


@dataclasses.dataclass(frozen=True)
class DomainOption:
    """A domain's own command-line option of `dgpg train`, `evaluate` and `bench`: `flag VALUE`
    sets the environment field `field` (RoadNet's `--network PATH_PREFIX` sets `env.network`)."""

    flag: str
    """The option, e.g. "--network"."""
    field: str
    """The environment configuration's field it sets."""
    help: str
    metavar: str = "VALUE"
    path: bool = False
    """The value may be a file path: one that names an existing file or folder or holds a path
    separator is made absolute (so that a run can be resumed from elsewhere); a plain name such
    as a built-in case's is kept."""


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """A domain's declaration (see the module docstring). Only `name`, `title`, `config`,
    `domain`, `models`, `heuristics` and `reference` are required; `slots_per_agent` and
    `candidates_per_slot` are expected (a spec without them is read with a DeprecationWarning,
    its J and K taken from the observation's shape)."""

    name: str
    """`--domain NAME`: lower case letters, digits and dashes."""
    title: str
    """The environment's name in tables and figures ("HeteroCloud")."""
    config: str
    """"module:Class" of the environment configuration: a frozen, hashable dataclass (a `jit`
    static argument) with fields `n_agents` and `episode_steps`, buildable from `n_agents` alone,
    whose module imports no JAX."""
    domain: str
    """"module:attribute" of the domain's `Domain` (its pure functions; may import JAX)."""
    models: Mapping[str, str]
    """Analytical model name -> "module:factory", the default first; `factory(config)` returns an
    `AnalyticalModel` (`dgpg.domains.model`)."""
    heuristics: Mapping[str, str]
    """Heuristic name -> "module:function"; `function(key, state, config)` returns actions (N, J)
    int32 in [0, K)."""
    reference: str
    """The heuristic that every training run is compared with (the lower line of the figures);
    one of `heuristics`."""
    slots_per_agent: str | None = None
    """The configuration's field (or property) holding J, the decision slots per agent and
    step; `check_domain` checks it against the observation."""
    candidates_per_slot: str | None = None
    """The configuration's field (or property) holding K, the candidates of each slot."""
    table_metrics: tuple[str, ...] = ("return",)
    """Episode metrics tabulated by `dgpg evaluate`, `return` first."""
    options: tuple[DomainOption, ...] = ()
    """Extra command-line options."""
    model_errors: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Misspecification families of the domain's analytical models: kind name -> one line on
    what the model then believes, the default kind first (the systematic one). A domain that
    declares any has configuration fields `model_error` (E, the relative size in [0, 1),
    0 = exact), `model_error_kind` and `model_error_seed`, set as `--set model.error=E`,
    `model.error_kind=NAME` and `model.error_seed=S`: the environment ignores them (it keeps
    the truth), the models and the model-based heuristics use the belief."""
    gamma: float = 0.99
    """The discount every learner uses in this domain (run generation 2 on, `dgpg.config`): 0
    where each period's outcome does not depend on the actions of the periods before it, so
    that no learner's advantage carries the noise of periods its action cannot change."""
    train_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Other learner hyperparameters (`TrainConfig` fields) this domain sets for every learner
    alike, run generation 2 on: e.g. RoadNet's agents per minibatch."""
    sweep_key: str | None = None
    """"module:function" mapping a run's env overrides (a dict) to those that name it in a
    sweep's folder key, e.g. a network file as its digest rather than its path (None: as given)."""
    experiments: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """A plug-in's own experiments of `dgpg reproduce`: name -> module with
    `run(out, quick=...)` (the built-in domains' live in `dgpg.experiments`)."""
    summary: str = ""
    """One line for `dgpg domains` and `--help`."""

    def __post_init__(self) -> None:
        name = self.name
        if (not isinstance(name, str) or not name or not name[0].isalpha()
                or not all(c.isascii() and (c.isalnum() or c == "-") for c in name)
                or name != name.lower()):
            raise DomainError(f"domain name {name!r:.40} must be lower-case letters, digits "
                              "and dashes, starting with a letter")
        for field in ("models", "heuristics", "experiments", "model_errors"):
            value = getattr(self, field)
            if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise DomainError(f"domain {name}: {field} must map names to "
                                  "'module:attribute' texts")
            object.__setattr__(self, field, dict(value))  # a copy: picklable, not shared
        if not self.models:
            raise DomainError(f"domain {name}: it declares no analytical model")
        if self.reference not in self.heuristics:
            raise DomainError(f"domain {name}: its reference {self.reference!r} is not one of "
                              f"its heuristics ({', '.join(self.heuristics) or 'none'})")
        object.__setattr__(self, "table_metrics", tuple(self.table_metrics))
        if (isinstance(self.gamma, bool) or not isinstance(self.gamma, int | float)
                or not 0.0 <= self.gamma <= 1.0):
            raise DomainError(f"domain {name}: gamma must be a discount in [0, 1], got "
                              f"{self.gamma!r:.40}")
        if not isinstance(self.train_defaults, Mapping) or not all(
                isinstance(k, str) and k.isidentifier() for k in self.train_defaults):
            raise DomainError(f"domain {name}: train_defaults must map learner field names "
                              "to values")
        object.__setattr__(self, "train_defaults", dict(self.train_defaults))
        if not self.table_metrics or self.table_metrics[0] != "return":
            raise DomainError(f"domain {name}: table_metrics must start with 'return'")
        for field in ("slots_per_agent", "candidates_per_slot"):
            value = getattr(self, field)
            if value is not None and not (isinstance(value, str) and value.isidentifier()):
                raise DomainError(f"domain {name}: {field} must name a field of its "
                                  f"configuration, got {value!r:.40}")
        object.__setattr__(self, "options", tuple(self.options))
        flags = [o.flag for o in self.options]
        if len(set(flags)) != len(flags) or not all(f.startswith("--") for f in flags):
            raise DomainError(f"domain {name}: options need distinct '--flag' names")

    @property
    def default_model(self) -> str:
        """The model a DG-PG run of this domain uses unless told otherwise."""
        return next(iter(self.models))

    def config_type(self) -> type:
        """The environment configuration's class (imported on first use)."""
        return load_object(self.config, f"the configuration of domain {self.name}")

    def option(self, flag: str) -> DomainOption | None:
        return next((o for o in self.options if o.flag == flag), None)
