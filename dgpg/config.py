"""A training run's configuration: `RunConfig`, and how it is set from files and `--set` flags.

A run is described in three sections, the same as in its `config.json`:

    run    what `dgpg train` asks for: algo, n_agents, episodes, seed, seeds, alpha, model,
           domain
    train  every other field of the learner's `TrainConfig` (learning_rate, ent_coef, ...)
    env    every other field of the domain's environment configuration (the cloud's
           `EnvConfig`: arrival_rate, drop_weight, ...; RoadNet's `RoadConfig`: network, ...)

Values come in layers, later ones winning: the defaults (or, on resume, the run's own
configuration), a TOML or JSON file (`--config FILE`, the sections above as tables; a run's
`config.json` is such a file), the command's options, then `--set SECTION.FIELD=VALUE` flags.
Every value is checked against its field's type and limits; errors are `ConfigError`, one line
naming the key. Importable without JAX, so that a bad option is refused before JAX loads.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dgpg.domains import DEFAULT_DOMAIN, DomainError, get_spec, names
from dgpg.learners.config import ALGORITHMS, MODEL_ALGORITHMS, TUNED, TrainConfig

NO_MODEL = "none"
SECTIONS = ("run", "train", "env", "model")
MODEL_SECTION = "model"
"""`model.FIELD` is the environment field `model_FIELD` of a domain with misspecification
families (`DomainSpec.model_errors`): `--set model.error=0.3` sets `env.model_error`."""
DEFAULT_RUN = {"algo": "dgpg", "n_agents": 10, "episodes": 20}
"""The run fields `dgpg train` uses when neither its options nor a file give them."""

DEFAULTS = 3
"""The generation of the learners' defaults that a new run gets (`RunConfig.defaults`).
A run's folder key and config.json name only what differs from its generation's defaults, so a
changed default starts a new generation rather than changing what a stored run means:
    1  alpha fixed, discount 0.99 in every domain (the runs written before generations);
    2  the domain's discount (`DomainSpec.gamma`: 0 on RoadNet and PowerGrid) and its other
       learner settings (`DomainSpec.train_defaults`: every agent in each minibatch on
       RoadNet) for every learner, and DG-PG's adaptive guidance weight, which lets go of the
       model once the policy does better than the model's own rule;
    3  generation 2 with alpha fixed again: with the models corrected by what the roll-outs
       observe (HeteroCloud's and RoadNet's `calibrated`, the default models), a fixed weight
       kept the corrected guidance and beat the adaptive one, which judged the model by its
       uncorrected rule and let go of it (`dgpg reproduce model-error`; docs/design.md,
       section 5)."""

GENERATION_1 = {"alpha_schedule": "fixed", "gamma": 0.99}
"""The TrainConfig fields whose defaults changed in generation 2, as generation 1 had them."""

GENERATIONS: dict[int, dict[str, Any]] = {
    2: {"alpha_schedule": "adaptive"},
    3: {"alpha_schedule": "fixed"},
}
"""What each generation from 2 on sets over TrainConfig's own defaults, besides the domain's
discount and `train_defaults`."""


def train_defaults(algo: str, domain: str, generation: int) -> dict[str, Any]:
    """The TrainConfig fields that a run of `algo` in `domain` has unless it overrides them:
    the algorithm's tuned pair (`TUNED`) and its generation's defaults."""
    if generation == 1:
        return {**TUNED[algo], **GENERATION_1}
    spec = get_spec(domain)
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - RUN_ONLY
    if unknown := sorted(set(spec.train_defaults) - fields):
        raise ConfigError(f"domain {domain}: train_defaults names no learner field "
                          f"{unknown[0]!r:.40}")
    return {**TUNED[algo], **GENERATIONS[generation], **spec.train_defaults,
            "gamma": float(spec.gamma)}


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names the key."""


class RunError(Exception):
    """A run cannot start or resume (bad folder, mismatched configuration), or it diverged."""


# --------------------------------------------------------------------------- overrides


def overrides_json(train: dict[str, Any] | None = None, env: dict[str, Any] | None = None) -> str:
    """The canonical text of TrainConfig ('train') and EnvConfig ('env') field overrides: sorted
    compact JSON of the non-empty sections, '' for none."""
    data = {k: dict(sorted(v.items())) for k, v in (("train", train), ("env", env)) if v}
    return json.dumps(data, sort_keys=True, separators=(",", ":")) if data else ""


def parse_overrides(text: str) -> dict[str, dict[str, Any]]:
    """{'train': {...}, 'env': {...}} of an overrides text ('' for none)."""
    try:
        data = json.loads(text) if text else {}
    except (TypeError, ValueError):
        data = None
    if (not isinstance(data, dict) or set(data) - {"train", "env"}
            or not all(isinstance(v, dict) for v in data.values())):
        raise ConfigError(f"overrides must be JSON with keys 'train' and/or 'env', "
                          f"got {text!r:.60}")
    return {"train": dict(data.get("train", {})), "env": dict(data.get("env", {}))}


# --------------------------------------------------------------------------- the run


def make_env_config(n_agents: int, env: dict[str, Any], domain: str = DEFAULT_DOMAIN) -> Any:
    """The environment configuration of a run in `domain`: N agents and the 'env' overrides
    (DomainError, a ValueError, for an unknown or broken domain)."""
    return get_spec(domain).config_type()(n_agents=n_agents, **env)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What `dgpg train` was asked for: the run's fields, the learner's `TrainConfig` and the
    domain's environment configuration, each typed and checked once, when the run is made.
    `train` and `env` may be given as the typed configurations or as mappings of the fields
    that differ from their defaults; they are stored typed, with the run's own fields (algo,
    alpha, model; n_agents) written into them. Equal configurations have equal `RunConfig`s."""

    algo: str
    n_agents: int
    episodes: int
    seed: int = 0
    seeds: int = 1
    alpha: float = 0.5
    model: str | None = None
    """DG-PG's analytical model (None: the domain's default, its first); "none" for MAPPO and
    IPPO, which use no model."""
    domain: str = DEFAULT_DOMAIN
    """The environment: a registered domain (`dgpg.domains.names()`)."""
    train: Any = None
    """The learner's `TrainConfig` (given: a TrainConfig, or a mapping of overridden fields)."""
    env: Any = None
    """The domain's environment configuration (given: one, or a mapping of overridden
    fields)."""
    defaults: int = DEFAULTS
    """The generation of defaults that `train` is read against (`DEFAULTS`); runs stored
    without one are generation 1."""

    def __post_init__(self) -> None:
        if not isinstance(self.algo, str) or self.algo not in ALGORITHMS:
            raise ConfigError(f"unknown algorithm {self.algo!r:.40}; known: "
                              f"{', '.join(ALGORITHMS)}")
        try:
            models = tuple(get_spec(self.domain).models)
        except DomainError as e:
            raise ConfigError(str(e)) from None
        unused = self.algo not in MODEL_ALGORITHMS  # MAPPO, IPPO: "none", or any (unused)
        if self.model is not None and (not isinstance(self.model, str) or self.model not in (
                *models, *((NO_MODEL,) if unused else ()))):  # a typo is refused everywhere
            where = "" if self.domain == DEFAULT_DOMAIN else f" in the {self.domain} domain"
            raise ConfigError(f"unknown model {self.model!r:.40}{where}; known: "
                              f"{', '.join(models)}")
        if unused:
            object.__setattr__(self, "model", NO_MODEL)
        elif self.model is None:
            object.__setattr__(self, "model", models[0])
        for name, (lo, hi) in RUN_LIMITS.items():
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | np.integer)
                    or not lo <= value <= hi):
                raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], "
                                  f"got {value!r:.40}")
            object.__setattr__(self, name, int(value))  # config.json holds Python numbers
        if (isinstance(self.alpha, bool) or not isinstance(self.alpha, int | np.floating | float)
                or not 0.0 <= self.alpha <= 1.0):  # also rejects NaN
            raise ConfigError(f"alpha must be a number in [0, 1], got {self.alpha!r:.40}")
        object.__setattr__(self, "alpha", float(self.alpha))
        if (isinstance(self.defaults, bool) or not isinstance(self.defaults, int | np.integer)
                or not 1 <= self.defaults <= DEFAULTS):
            raise ConfigError(f"defaults must be a generation in 1..{DEFAULTS}, got "
                              f"{self.defaults!r:.40}")
        object.__setattr__(self, "defaults", int(self.defaults))
        try:
            object.__setattr__(self, "train", self._typed_train(self.train))
            object.__setattr__(self, "env", self._typed_env(self.env))
        except ValueError as e:  # e.g. N beyond the environment's 32-bit indices
            raise ConfigError(_name_section(str(e))) from None

    def _typed_train(self, given: Any) -> TrainConfig:
        """The learner's hyperparameters: the defaults of the run's generation (shared, with
        the algorithm's tuned learning rate and entropy coefficient and the domain's discount;
        `train_defaults`), then `given`, then the run's own fields."""
        run = {"algo": self.algo, "alpha": self.alpha,
               **({"model": self.model} if self.algo in MODEL_ALGORITHMS else {})}
        if isinstance(given, TrainConfig):
            fields = {k: v for k, v in dataclasses.asdict(given).items()
                      if k not in RUN_ONLY}
        else:
            fields = self._checked("train", given)
        base = train_defaults(self.algo, self.domain, self.defaults)
        defaults = dataclasses.asdict(TrainConfig(**base))
        return TrainConfig(**{**base, **{k: v for k, v in fields.items() if v != defaults[k]},
                              **run})

    def _typed_env(self, given: Any) -> Any:
        spec = get_spec(self.domain)
        if isinstance(given, spec.config_type()):
            return dataclasses.replace(given, n_agents=self.n_agents)
        return make_env_config(self.n_agents, self._checked("env", given), self.domain)

    def _checked(self, section: str, given: Any) -> dict[str, Any]:
        if given is None:
            return {}
        if not isinstance(given, Mapping):
            raise ConfigError(f"{section} must be a table of fields, got {given!r:.60}")
        return {key: coerce(section, key, value, self.domain) for key, value in given.items()}

    @property
    def overrides(self) -> str:
        """The `train` and `env` fields that differ from their defaults, as canonical text
        (`overrides_json`): how the run is stored and named (a sweep's folder key)."""
        changed = {}
        for section, typed in (("train", self.train), ("env", self.env)):
            defaults = self._defaults(section)
            changed[section] = {k: v for k, v in dataclasses.asdict(typed).items()
                                if k in defaults and k not in RUN_ONLY and v != defaults[k]}
        return overrides_json(**changed)

    def _defaults(self, section: str) -> dict[str, Any]:
        if section == "train":
            return dataclasses.asdict(TrainConfig(**train_defaults(self.algo, self.domain,
                                                                   self.defaults)))
        return _env_defaults(self.domain)

    def train_config(self) -> TrainConfig:
        """The learner's hyperparameters (`train`)."""
        return self.train

    def env_config(self) -> Any:
        """The environment configuration of the run's domain (`env`)."""
        return self.env

    def run_fields(self) -> dict[str, Any]:
        """The run section's own fields (algo ... domain), without `train` and `env`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("train", "env")}

    def to_json(self) -> dict[str, Any]:
        """What config.json holds: the run section (its fields and the `overrides` text that
        names what differs from the defaults) and the train and env sections, resolved."""
        return {"run": {**self.run_fields(), "overrides": self.overrides},
                "train": dataclasses.asdict(self.train_config()),
                "env": dataclasses.asdict(self.env_config())}

    @classmethod
    def from_dict(cls, run: Any) -> RunConfig:
        """A stored `run` section (of config.json or a checkpoint), older forms included: its
        `overrides` text gives the train and env fields."""
        if not isinstance(run, dict):
            raise ConfigError("the run section is not a table of fields")
        run = upgrade_run_dict(run)
        fields = {"defaults": 1, **run}  # stored before generations: generation 1
        extra = parse_overrides(fields.pop("overrides", ""))
        known = {f.name for f in dataclasses.fields(cls)} - {"train", "env"}
        if unknown := sorted(set(fields) - known):
            raise ConfigError(f"unknown run field {unknown[0]!r:.40}")
        return cls(**fields, train=extra["train"], env=extra["env"])


RUN_LIMITS = {"n_agents": (1, 16383), "episodes": (1, 1_000_000), "seed": (0, 2**31 - 1),
              "seeds": (1, 64)}
"""Inclusive limits of the run's integer fields (N: the environment's 32-bit indices with two
servers and eight job slots per agent)."""

RUN_ONLY = {"algo", "alpha", "model", "n_agents"}
"""Fields of TrainConfig / EnvConfig that are set in the run section, not in theirs."""


def upgrade_run_dict(run: Any) -> Any:
    """A stored run section in today's form: runs written before the analytical model was an
    option trained DG-PG with the fluid model (and MAPPO and IPPO with none)."""
    if isinstance(run, dict) and "model" not in run and "algo" in run:
        run = {**run, "model": "fluid" if run["algo"] == "dgpg" else NO_MODEL}
    return run


# --------------------------------------------------------------------------- keys and values


def _env_defaults(domain: str) -> dict[str, Any]:
    return _defaults_of(get_spec(domain).config)


@functools.cache
def _defaults_of(config_path: str) -> dict[str, Any]:
    from dgpg.domains import load_object

    return dataclasses.asdict(load_object(config_path)(n_agents=DEFAULT_RUN["n_agents"]))


def settable_keys(domain: str | None = None) -> dict[str, type]:
    """Every `SECTION.FIELD` that a file or `--set` may give in `domain`, with its type; with
    no domain, those of every domain (a field that two domains share has one type)."""
    if domain is not None:
        return _keys_of(get_spec(domain).config)
    keys: dict[str, type] = {}
    for name in names():
        for key, kind in settable_keys(name).items():
            if keys.setdefault(key, kind) is not kind:
                raise TypeError(f"{key} has two types: {keys[key]} and {kind}")
    return keys


@functools.cache
def _keys_of(config_path: str) -> dict[str, type]:
    from dgpg.domains import load_object

    keys: dict[str, type] = {}
    for section, cls in (("run", RunConfig), ("train", TrainConfig),
                         ("env", load_object(config_path))):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if section == "run" and f.name in ("train", "env"):
                continue
            if section != "run" and f.name in RUN_ONLY:
                continue
            kind = hints[f.name]
            if type(None) in typing.get_args(kind):  # `str | None`: None means the default
                kind = next(a for a in typing.get_args(kind) if a is not type(None))
            if kind not in _KIND_NAMES:
                raise TypeError(f"{section}.{f.name} has type {kind}; a configuration's fields "
                                f"are {', '.join(k.__name__ for k in _KIND_NAMES)}")
            keys[f"{section}.{f.name}"] = kind
    return keys


def coerce(section: str, field: str, value: Any, domain: str | None = None) -> Any:
    """`value` as the type of `section.field` in `domain` (any domain if None; text from `--set`
    is parsed); ConfigError if the key is unknown or the value has another type."""
    key = f"{section}.{field}"
    kind = settable_keys(domain).get(key)
    if kind is None and key.startswith("env.model_"):
        shown = shown_key(key)
        others = [d for d in names() if key in settable_keys(d)]
        if domain is None or not others:
            raise ConfigError(f"unknown key {shown!r:.60}; see `dgpg train --help-keys` for "
                              "the keys")
        raise ConfigError(f"{shown} is not a key of the {domain} domain, whose model declares "
                          f"no misspecification (it is one of {', '.join(others)})")
    if kind is None:
        if section in ("train", "env") and field in RUN_ONLY:
            target = "run.n_agents (--agents)" if field == "n_agents" else f"run.{field}"
            raise ConfigError(f"{key} is set as {target}")
        if others := [d for d in names() if key in settable_keys(d)]:
            raise ConfigError(f"{key} is not a key of the {domain} domain but of "
                              f"{', '.join(others)} (--domain {others[0]})")
        raise ConfigError(f"unknown key {key!r:.60}; see `dgpg train --help-keys` for the "
                          "keys")
    if isinstance(value, str) and kind is bool:
        value = {"true": True, "false": False}.get(value.strip().lower(), value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r:.40}")
        return value
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if not text.isascii():  # int() and float() also read other scripts' digits
                raise ValueError(text)
            value = int(text) if kind is int else float(text)
        except ValueError:
            raise ConfigError(f"{key} must be {_KIND_NAMES[kind]}, got {value!r:.40}") from None
    if kind is float and isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, np.floating):
        value = float(value)
    if kind is int and isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{key} must be {_KIND_NAMES[kind]}, got {value!r:.40}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return value


_KIND_NAMES = {int: "an integer", float: "a number", str: "text", bool: "true or false"}


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """`["train.learning_rate=3e-4", ...]` as sections {'train': {'learning_rate': 3e-4}};
    values typed by their field."""
    sections: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        section, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise ConfigError(f"--set takes SECTION.FIELD=VALUE (e.g. train.learning_rate=3e-4),"
                              f" got {item!r:.60}")
        if section not in SECTIONS:
            raise ConfigError(f"unknown section {section!r:.40} in --set {item!r:.60}; "
                              f"known: {', '.join(SECTIONS)}")
        section, field = stored_key(section, field)
        sections.setdefault(section, {})[field] = coerce(section, field, value)
    return sections


def stored_key(section: str, field: str) -> tuple[str, str]:
    """Where `section.field` is stored: `model.FIELD` in the env section as `model_FIELD`."""
    return ("env", f"model_{field}") if section == MODEL_SECTION else (section, field)


def shown_key(key: str) -> str:
    """How a stored key is written for users: `env.model_FIELD` as `model.FIELD`."""
    return f"{MODEL_SECTION}.{key[len('env.model_'):]}" if key.startswith("env.model_") else key


def read_file(path: Path) -> dict[str, dict[str, Any]]:
    """The sections of a TOML or JSON configuration file (a run's config.json included)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"cannot read configuration file {path}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"{path} is not valid {kind}: {e}") from None
    if not isinstance(data, dict) or (unknown := sorted(set(data) - set(SECTIONS))):
        what = f"unknown section {unknown[0]!r:.40}" if isinstance(data, dict) else "not a table"
        raise ConfigError(f"{path}: {what}; a configuration has the sections "
                          f"{', '.join(SECTIONS)}")
    # a run's stored config.json repeats the run's fields in its train section; one written
    # before the analytical model was an option means the fluid model where it names none
    stored = isinstance(data.get("train"), dict) and "algo" in data["train"]
    sections: dict[str, dict[str, Any]] = {}
    for section, fields in data.items():
        if not isinstance(fields, dict):
            raise ConfigError(f"{path}: section {section!r} is not a table")
        if section == "run":
            fields = upgrade_run_dict(fields) if stored else dict(fields)
            overrides = fields.pop("overrides", "")  # a config.json's run section
            if overrides:
                for name, values in parse_overrides(overrides).items():
                    sections.setdefault(name, {}).update(values)
        for field, value in fields.items():
            if section != "run" and field in RUN_ONLY:
                continue  # config.json repeats the run's fields in train and env
            where, name = stored_key(section, field)
            try:
                sections.setdefault(where, {})[name] = coerce(where, name, value)
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
    return sections


def resolve(base: RunConfig | dict[str, Any],
            *layers: dict[str, dict[str, Any]]) -> RunConfig:
    """`base` (a RunConfig, or the run fields of the defaults) with `layers` of sections on
    top, later ones winning; each layer's values are already typed (`parse_set`,
    `read_file`)."""
    if isinstance(base, RunConfig):
        run = base.run_fields()
        extra = parse_overrides(base.overrides)
    else:
        run, extra = dict(base), {"train": {}, "env": {}}
    for layer in layers:
        run.update(layer.get("run", {}))
        for section in ("train", "env"):
            extra[section].update(layer.get(section, {}))
    try:
        return RunConfig(**run, train=extra["train"], env=extra["env"])
    except TypeError as e:  # a run field missing
        raise ConfigError(str(e)) from None
    except ConfigError as e:
        raise ConfigError(_name_section(str(e), sections=("run",))) from None


def differences(old: RunConfig, new: RunConfig,
                ignore: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(KEY, OLD, NEW) for every resolved key in which two configurations differ."""
    flat_old, flat_new = _flat(old), _flat(new)
    if old.domain != new.domain:  # their other sections have nothing in common
        flat_old, flat_new = ({k: v for k, v in flat.items() if k.startswith("run.")}
                              for flat in (flat_old, flat_new))
    return [(k, flat_old[k], flat_new[k]) for k in flat_old
            if k not in ignore and flat_old[k] != flat_new[k]]


def _flat(run: RunConfig) -> dict[str, Any]:
    data = run.to_json()
    return {f"{s}.{k}": v for s in ("run", "train", "env") for k, v in data[s].items()
            if f"{s}.{k}" in settable_keys(run.domain)}


def _name_section(message: str, sections: tuple[str, ...] = ("train", "env")) -> str:
    """Prefix an error that starts with the name of a field of `sections` by its section."""
    first = message.split(" ", 1)[0]
    for key in settable_keys():
        section, field = key.split(".")
        if section in sections and field == first:
            return f"{section}.{message}"
    return message


def help_keys(domain: str = DEFAULT_DOMAIN) -> str:
    """Every settable key of `domain` with its type and default (`dgpg train --help-keys`)."""
    defaults = RunConfig(**DEFAULT_RUN, domain=domain).to_json()
    lines = []
    for key, kind in settable_keys(domain).items():
        section, field = key.split(".")
        default = defaults[section][field]
        if section == "train" and field in ("learning_rate", "ent_coef"):
            default = ", ".join(f"{a} {TUNED[a][field]:g}" for a in ALGORITHMS)
        lines.append(f"{shown_key(key):<28} {_KIND_NAMES[kind]:<12} default {default}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- run folders


def saved_config(out: Path) -> RunConfig:
    """The configuration of the run in `out` (its config.json); RunError if there is none."""
    config_path = Path(out) / "config.json"
    if not config_path.exists():
        raise RunError(f"nothing to resume in {out} (no config.json)")
    try:
        saved = json.loads(config_path.read_text())
    except (OSError, ValueError):
        raise RunError(f"cannot read {config_path}") from None
    try:
        return RunConfig.from_dict(saved.get("run") if isinstance(saved, dict) else None)
    except (ConfigError, TypeError) as e:
        raise RunError(f"{config_path} is not a dgpg run configuration ({e})") from None


OLD_SUMMARY_KEYS = {"bestfit_central_val_return": "reference_val_return",
                    "bestfit_central_test_return": "reference_test_return"}
"""summary.json keys of runs written when the reference was always best-fit-central."""


def upgrade_summary(summary: Any) -> Any:
    """A run's summary.json in today's form: older runs name their reference's returns
    `bestfit_central_*` (and the reference itself not at all)."""
    if isinstance(summary, dict) and any(k in summary for k in OLD_SUMMARY_KEYS):
        summary = {**summary, **{new: summary[old] for old, new in OLD_SUMMARY_KEYS.items()
                                 if old in summary and new not in summary}}
        summary.setdefault("reference", "best-fit-central")
    return summary


def read_summary(path: Path) -> dict[str, Any] | None:
    """A run's summary.json (today's form), or None if it is missing or not a JSON object."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return upgrade_summary(summary) if isinstance(summary, dict) else None


def read_metric_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv; RunError unless each has an integer episode and seed."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            int(r["episode"]), int(r["seed"])
    except (OSError, ValueError, KeyError, TypeError, csv.Error):
        raise RunError(f"cannot read {path}; it is not a metrics file of dgpg") from None
    return rows


def check_folder(out: Path, run: RunConfig, resume: bool) -> None:
    """Raise RunError unless `out` can take `run`: empty for a new run; for resume, the same
    run, except that `episodes` may be raised (the run is then extended)."""
    if resume:
        saved = saved_config(out)
        if run.episodes < saved.episodes:
            raise RunError(f"{out} holds a run of {saved.episodes} episodes; --episodes can "
                           f"extend it, not shorten it (got {run.episodes})")
        if changed := differences(saved, run, ignore=("run.episodes",)):
            raise RunError(f"{out} holds a run with another configuration: " + "; ".join(
                f"{key} is {was!r} in the run, {now!r} given" for key, was, now in changed))
        if (out / "metrics.csv").exists():
            read_metric_rows(out / "metrics.csv")
        return
    if has_started(out):
        raise RunError(f"{out} already holds a run; use --resume or another --out")


def has_started(out: Path) -> bool:
    """Whether `out` holds a run that trained (metrics or a checkpoint). A folder with only the
    config.json of a run that failed before its first episode has not: it can be started again."""
    checkpoints = out / "checkpoints"
    return (out / "metrics.csv").exists() or (checkpoints.is_dir() and any(checkpoints.iterdir()))
