"""The local observation every domain gives its agents: the actor's input, identical for every
algorithm. Each agent has J decision slots per step (jobs to place, platoons to route, blocks of
demand to site), each a choice among its K candidates (servers, paths, buses)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from flax import struct

_RENAMED = {"jobs": "slots", "job_mask": "slot_mask"}
"""The fields' former names: still accepted, with a DeprecationWarning."""


@struct.dataclass
class Observation:
    """Local observations of all agents; the feature sizes are the domain's."""

    candidates: jax.Array  # (N, K, Fc) per-candidate features
    slots: jax.Array  # (N, J, Fs) per-slot features (zero where no decision is pending)
    context: jax.Array  # (N, Fx) shared features (time of day, load)
    slot_mask: jax.Array  # (N, J) bool, True where a decision is pending

    def __getattr__(self, name: str):  # only called for names that are not fields
        if name in _RENAMED:
            _warn_renamed(name)
            return getattr(self, _RENAMED[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _warn_renamed(name: str) -> None:
    warnings.warn(f"Observation.{name} is now Observation.{_RENAMED[name]}; the old name will "
                  "be removed in the next release", DeprecationWarning, stacklevel=3)


_dataclass_init = Observation.__init__


def _init(self, *args, **kwargs) -> None:
    for old, new in _RENAMED.items():
        if old in kwargs:
            _warn_renamed(old)
            kwargs[new] = kwargs.pop(old)
    _dataclass_init(self, *args, **kwargs)


Observation.__init__ = _init


def pair_views(obs: Observation) -> tuple[jax.Array, jax.Array, list[jax.Array]]:
    """The pieces of a scorer's pair features: the candidate (..., N, 1, K, Fc) and slot
    (..., N, J, 1, Fs) views, and the raw features of every (agent, slot, candidate) triple,
    broadcast: [candidate, slot, context], each (..., N, J, K, F).
    A domain's `pair_features` concatenates the list with whatever it derives from the views."""
    cand = obs.candidates[..., None, :, :]
    slot = obs.slots[..., :, None, :]
    ctx = obs.context[..., None, None, :]
    shape = jnp.broadcast_shapes(cand.shape[:-1], slot.shape[:-1])
    raw = [jnp.broadcast_to(x, (*shape, x.shape[-1])) for x in (cand, slot, ctx)]
    return cand, slot, raw
