"""Domains: the environment families DG-PG learns in, and the registry that names them.

A domain is a folder (a package) holding everything it is: its configuration, environment,
analytical models and heuristics. It declares itself with a `DomainSpec` (JAX-free: names,
import paths, options) and implements the pure functions of a `Domain`, from which the
PettingZoo and TorchRL adapters (`dgpg.pettingzoo`, `dgpg.torchrl`) are built. The learners,
training, evaluation and experiments never import a domain; they ask this registry:

    spec = get_spec("roads")            # JAX-free: names and options, for checks before JAX
    domain = get_domain("roads")        # its pure functions (imports the domain)
    domain = domain_of(env_config)      # the domain of a configuration

Domains are found through the entry-point group `dgpg.domains` (name = "module:SPEC"), which is
how the built-in `cloud` and `roads` register themselves in dgpg's own pyproject.toml and how a
package of one's own adds a domain that `dgpg train --domain NAME`, sweeps and Ray workers all
find. `register(spec)` adds one from Python for the current process. A plug-in that cannot be
loaded, or that takes a name already taken, is left out with a one-line reason (`problems()`);
it never breaks another domain. `check_domain(domain, config)` tests a domain's contract.
This module imports no JAX.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from dgpg.domains.domain import Domain
from dgpg.domains.spec import DomainError, DomainOption, DomainSpec, load_object

EnvConfig = Any
"""A domain's environment configuration (see `DomainSpec.config`)."""

ENTRY_POINT_GROUP = "dgpg.domains"
DEFAULT_DOMAIN = "cloud"
BUILT_IN = "dgpg"
"""The distribution whose entry points are the built-in domains: they win any name clash."""

_specs: dict[str, DomainSpec] = {}
_problems: dict[str, str] = {}
_by_register: set[str] = set()
_domains: dict[str, Domain] = {}
_config_types: dict[type, str] = {}
_scanned = False


def _scan_entry_points() -> None:
    """Load every spec of the entry-point group once; record, never raise, what fails."""
    global _scanned
    if _scanned:
        return
    _scanned = True
    by_name: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if all(ep.value != other.value for other in by_name.get(ep.name, [])):  # one install
            by_name.setdefault(ep.name, []).append(ep)

    def package(ep) -> str:
        return getattr(ep.dist, "name", None) or "an unknown package"

    for name, eps in sorted(by_name.items(), key=lambda item: item[0] != DEFAULT_DOMAIN):
        built_in = [ep for ep in eps if package(ep) == BUILT_IN]
        if len(eps) > 1:
            ways = ", ".join(f"{ep.value} ({package(ep)})" for ep in eps)
            if not built_in:
                _problems[name] = f"domain {name!r} is declared twice: {ways}; uninstall one"
                continue
            _problems[f"{name} ({package(eps[-1])})"] = (
                f"a plug-in declares the built-in domain name {name!r} ({ways}); it is ignored")
            eps = built_in
        try:
            spec = eps[0].load()
        except Exception as e:  # a plug-in's own import error, whatever it is
            _problems[name] = (f"the domain plug-in {name!r} ({eps[0].value}, "
                               f"{package(eps[0])}) cannot be loaded: {type(e).__name__}: "
                               f"{' '.join(str(e).split())}")[:300]
            continue
        if not isinstance(spec, DomainSpec) or spec.name != name:
            got = (f"a DomainSpec named {spec.name!r}" if isinstance(spec, DomainSpec)
                   else type(spec).__name__)
            _problems[name] = (f"the domain plug-in {name!r} ({eps[0].value}) is {got}, not a "
                               f"DomainSpec named {name!r}")
            continue
        _specs[name] = spec


def refresh() -> None:
    """Scan the entry points again (after a plug-in was installed into a running process);
    domains added with `register` stay."""
    global _scanned
    kept = {name: _specs[name] for name in _by_register}
    _specs.clear()
    _problems.clear()
    _domains.clear()
    _config_types.clear()
    _scanned = False
    _scan_entry_points()
    _specs.update(kept)


def register(spec: DomainSpec, replace: bool = False) -> None:
    """Add a domain for this process (an installed package uses the entry point instead).
    DomainError if its name is taken by another spec, unless `replace`."""
    _scan_entry_points()
    if not isinstance(spec, DomainSpec):
        raise DomainError(f"register takes a DomainSpec, got {type(spec).__name__}")
    old = _specs.get(spec.name)
    if old is not None and old != spec and not replace:
        raise DomainError(f"domain {spec.name!r} is already registered (its configuration is "
                          f"{old.config}); pick another name or pass replace=True")
    _specs[spec.name] = spec
    _problems.pop(spec.name, None)
    _domains.pop(spec.name, None)
    _by_register.add(spec.name)


def unregister(name: str) -> None:
    """Remove a domain added with `register` (for tests and notebooks)."""
    if name not in _by_register:
        raise DomainError(f"domain {name!r} was not added with register()")
    _by_register.discard(name)
    _specs.pop(name, None)
    _domains.pop(name, None)
    for kind in [k for k, v in _config_types.items() if v == name]:
        del _config_types[kind]


def names() -> tuple[str, ...]:
    """The known domains, the default first."""
    _scan_entry_points()
    return tuple(sorted(_specs, key=lambda n: (n != DEFAULT_DOMAIN, n)))


def problems() -> dict[str, str]:
    """Plug-ins left out, with the one-line reason."""
    _scan_entry_points()
    return dict(_problems)


def registered_specs() -> list[DomainSpec]:
    """The specs added with `register` in this process (sweeps pass them to their workers)."""
    return [_specs[n] for n in sorted(_by_register)]


def get_spec(name: str) -> DomainSpec:
    """The spec of domain `name`; DomainError naming the known ones (or why a plug-in of that
    name was left out)."""
    _scan_entry_points()
    spec = _specs.get(name) if isinstance(name, str) else None
    if spec is None:
        if isinstance(name, str) and name in _problems:
            raise DomainError(_problems[name])
        raise DomainError(f"unknown domain {name!r:.40}; known: {', '.join(names())}")
    return spec


def get_domain(name: str) -> Domain:
    """The domain `name` (its package is imported on first use); DomainError if unknown or if
    its package does not provide a `Domain` of that spec."""
    if name in _domains:
        return _domains[name]
    spec = get_spec(name)
    domain = load_object(spec.domain, f"the functions of domain {name}")
    if not isinstance(domain, Domain) or domain.spec != spec:
        raise DomainError(f"{spec.domain} is not the Domain of spec {name!r} (a Domain whose "
                          "spec is the registered one)")
    _domains[name] = domain
    return domain


def domain_name_of(env_config: Any) -> str:
    """The domain of a configuration: its class attribute `domain`, else the registered spec
    whose `config` names its class."""
    kind = type(env_config)
    if kind not in _config_types:
        name = getattr(kind, "domain", None)
        if not isinstance(name, str):
            path = f"{kind.__module__}:{kind.__qualname__}"
            name = next((s.name for s in map(get_spec, names()) if s.config == path), None)
            if name is None:
                raise DomainError(f"{kind.__qualname__} is the configuration of no registered "
                                  "domain")
        _config_types[kind] = name
    return _config_types[kind]


def domain_of(env_config: Any) -> Domain:
    """The domain of an environment configuration."""
    return get_domain(domain_name_of(env_config))


def __getattr__(name: str) -> Any:  # the checks import JAX: only when asked for
    if name in ("check_domain", "check_contract", "DomainCheckError"):
        from dgpg.domains import check

        return getattr(check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_DOMAIN",
    "ENTRY_POINT_GROUP",
    "Domain",
    "DomainCheckError",
    "DomainError",
    "DomainOption",
    "DomainSpec",
    "EnvConfig",
    "check_contract",
    "check_domain",
    "domain_name_of",
    "domain_of",
    "get_domain",
    "get_spec",
    "names",
    "problems",
    "refresh",
    "register",
    "registered_specs",
    "unregister",
]
