"""Water-filling: the minimiser of a capacity-weighted quadratic potential (docs/design.md, section
4).

    minimise  Phi(x) = sum_j (L_j + x_j)^2 / kappa_j   subject to  x >= 0,  sum_j x_j = W

has the solution x*_j = max(0, lam * kappa_j - L_j), where the water level lam is chosen so that
sum_j x*_j = W: every server that receives load ends at the same utilisation lam, and servers
already above it receive nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def water_level(load: jax.Array, capacity: jax.Array, total: jax.Array) -> jax.Array:
    """The level lam with sum_j max(0, lam kappa_j - L_j) = total, for 1-D arrays of shape (M,).

    Sort the servers by their current level L_j / kappa_j; if the first k servers are filled,
    lam_k = (total + sum_{i<=k} L_i) / sum_{i<=k} kappa_i. The answer is the lam_k that is not
    above the next server's level. O(M log M).
    """
    level = load / capacity
    order = jnp.argsort(level)
    lvl, cap, ld = level[order], capacity[order], load[order]
    lam = (total + jnp.cumsum(ld)) / jnp.cumsum(cap)
    next_level = jnp.concatenate([lvl[1:], jnp.full((1,), jnp.inf, lvl.dtype)])
    # The first k whose candidate level does not reach the next server's level is the answer:
    # filling more servers would require lam above their level and vice versa.
    fits = lam <= next_level
    k = jnp.argmax(fits)
    return jnp.where(total > 0, lam[k], lvl[0])


def waterfill(load: jax.Array, capacity: jax.Array, total: jax.Array) -> jax.Array:
    """Water-filling allocation x* of `total` over servers, shape (M,) like `load`.

    load: current load L_j >= 0; capacity: kappa_j > 0 (same units as load per unit of
    utilisation); total: W >= 0, the amount to place. Returns x* >= 0 with sum x* = W.
    Concrete arguments outside this domain (NaN, infinite, negative, mismatched shapes) raise
    ValueError (TypeError if not numbers); traced calls (under `jit` or `vmap`) are not checked.
    """
    _check(load, capacity, total)
    load = jnp.asarray(load, jnp.float32)
    capacity = jnp.asarray(capacity, jnp.float32)
    total = jnp.asarray(total, jnp.float32)
    lam = water_level(load, capacity, total)
    x = jnp.maximum(0.0, lam * capacity - load)
    return jnp.where(total > 0, x, jnp.zeros_like(x))


def _check(load, capacity, total) -> None:
    """Raise unless the concrete arguments are in waterfill's domain; nothing when traced."""
    if any(isinstance(v, jax.core.Tracer) for v in (load, capacity, total)):
        return
    arrays = {}
    for name, value in (("load", load), ("capacity", capacity), ("total", total)):
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):  # e.g. ragged lists
            array = np.asarray(None)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be real numbers, got {type(value).__name__} "
                             f"of {array.dtype}")
        arrays[name] = array.astype(np.float64)
    load, capacity, total = arrays["load"], arrays["capacity"], arrays["total"]
    if load.ndim != 1 or load.size == 0:
        raise ValueError(f"load must be a non-empty 1-D array, got shape {load.shape}")
    if capacity.shape != load.shape:
        raise ValueError(f"capacity must have the shape of load {load.shape}, "
                         f"got {capacity.shape}")
    if total.ndim != 0:
        raise ValueError(f"total must be a scalar, got shape {total.shape}")
    limit = float(np.finfo(np.float32).max)
    for name, v in arrays.items():
        bad = v[~(np.abs(v) <= limit)]  # NaN, infinite, or beyond float32
        if bad.size:
            raise ValueError(f"{name} must be finite (float32), got {float(bad.flat[0])}")
    if np.any(load < 0):
        raise ValueError(f"load must be >= 0, got {float(load.min())}")
    if np.any(capacity <= 0):
        raise ValueError(f"capacity must be > 0, got {float(capacity.min())}")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {float(total)}")


def potential(load: jax.Array, capacity: jax.Array, x: jax.Array) -> jax.Array:
    """Phi(x) = sum_j (L_j + x_j)^2 / kappa_j."""
    return jnp.sum((load + x) ** 2 / capacity)
