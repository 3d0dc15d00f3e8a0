"""Water-filling: the minimiser of a capacity-weighted quadratic potential (DESIGN section 4).

    minimise  Phi(x) = sum_j (L_j + x_j)^2 / kappa_j   subject to  x >= 0,  sum_j x_j = W

has the solution x*_j = max(0, lam * kappa_j - L_j), where the water level lam is chosen so that
sum_j x*_j = W: every server that receives load ends at the same utilisation lam, and servers
already above it receive nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
    """
    load = jnp.asarray(load, jnp.float32)
    capacity = jnp.asarray(capacity, jnp.float32)
    total = jnp.asarray(total, jnp.float32)
    lam = water_level(load, capacity, total)
    x = jnp.maximum(0.0, lam * capacity - load)
    return jnp.where(total > 0, x, jnp.zeros_like(x))


def potential(load: jax.Array, capacity: jax.Array, x: jax.Array) -> jax.Array:
    """Phi(x) = sum_j (L_j + x_j)^2 / kappa_j."""
    return jnp.sum((load + x) ** 2 / capacity)
