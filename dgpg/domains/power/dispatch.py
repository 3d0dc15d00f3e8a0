"""Generator dispatch on a `Grid`: economic dispatch (no network) and DC optimal power flow.

Economic dispatch meets a total load D (MW) at least cost, sum_g a_g P_g^2 + b_g P_g + c_g
($/h), with Pmin_g <= P_g <= Pmax_g and no line limits. At the optimum every unit not at a bound
runs at the common incremental cost lambda ($/MWh): P_g(lambda) = clip((lambda - b_g) / (2 a_g),
Pmin_g, Pmax_g), a unit with a_g = 0 sits at Pmin_g below b_g and at Pmax_g above it, and lambda
solves sum_g P_g(lambda) = D, found by bisection. A final interpolation between the bracket's
ends balances the load exactly, which also splits a block of linear (a_g = 0) units at the margin.
`economic_dispatch` is NumPy (float64); `economic_dispatch_jax` is pure jax.numpy with a fixed
number of iterations, so it can be traced inside a jitted step.

`solve_dcopf` adds the DC network: line flows PTDF (Cg P - d) within the ratings. It is a convex
QP solved by Clarabel; locational marginal prices (B,) $/MWh come from its dual variables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from dgpg.domains.power.grid import CaseError, Grid, load_case, ptdf

if TYPE_CHECKING:
    import jax

# a line is reported binding when its flow is within this many MW (plus the same relative to its
# rating) of the rating; the QP solver's own tolerances are 1e-8
BINDING_TOLERANCE_MW = 1e-4
_NUMPY_MAX_ITERATIONS = 200


class InfeasibleDispatch(CaseError):
    """No dispatch meets the load within generator bounds (and line limits, for DC-OPF)."""


def _supply(xp, lam, cost_a, cost_b, pmin, pmax):
    """Generator outputs (..., G) at incremental cost lam (..., 1); xp is numpy or jax.numpy."""
    linear = cost_a <= 0
    quadratic_output = (lam - cost_b) / (2.0 * xp.where(linear, 1.0, cost_a))
    linear_output = xp.where(lam > cost_b, pmax, pmin)
    return xp.clip(xp.where(linear, linear_output, quadratic_output), pmin, pmax)


def _bracket(xp, cost_a, cost_b, pmin, pmax):
    """Incremental costs below / above every unit's marginal cost over its whole range."""
    low = xp.min(cost_b + 2.0 * cost_a * pmin)
    high = xp.max(cost_b + 2.0 * cost_a * pmax)
    pad = 1.0 + 0.01 * (high - low)
    return low - pad, high + pad


def _interpolate(xp, lam_low, lam_high, p_low, p_high, load):
    """Dispatch on the segment between the bracket's ends that sums exactly to load."""
    gap = xp.sum(p_high) - xp.sum(p_low)
    safe_gap = xp.where(gap > 0, gap, 1.0)
    weight = xp.clip(xp.where(gap > 0, (load - xp.sum(p_low)) / safe_gap, 0.5), 0.0, 1.0)
    return p_low + weight * (p_high - p_low), lam_low + weight * (lam_high - lam_low)


def economic_dispatch(grid: Grid, load_mw_total: float) -> tuple[np.ndarray, float]:
    """Least-cost outputs P (G,) MW summing to load_mw_total, ignoring the network, and the
    system incremental cost lambda ($/MWh). Raises InfeasibleDispatch when the load lies
    outside [sum Pmin, sum Pmax]."""
    load = float(load_mw_total)
    pmin, pmax = grid.gen_pmin_mw, grid.gen_pmax_mw
    if not np.isfinite(load):
        raise CaseError(f"{grid.name}: load {load_mw_total!r} MW is not finite")
    if not pmin.sum() - 1e-9 <= load <= pmax.sum() + 1e-9:
        raise InfeasibleDispatch(
            f"{grid.name}: load {load:g} MW is outside the generation range "
            f"[{pmin.sum():g}, {pmax.sum():g}] MW"
        )
    args = (grid.cost_a, grid.cost_b, pmin, pmax)
    lam_low, lam_high = _bracket(np, *args)
    for _ in range(_NUMPY_MAX_ITERATIONS):
        lam = 0.5 * (lam_low + lam_high)
        if lam in (lam_low, lam_high):
            break
        if _supply(np, lam, *args).sum() < load:
            lam_low = lam
        else:
            lam_high = lam
    p_low, p_high = _supply(np, lam_low, *args), _supply(np, lam_high, *args)
    dispatch_mw, lam = _interpolate(np, lam_low, lam_high, p_low, p_high, load)
    return dispatch_mw, float(lam)


def economic_dispatch_jax(
    cost_a: jax.Array,
    cost_b: jax.Array,
    pmin_mw: jax.Array,
    pmax_mw: jax.Array,
    load_mw_total: jax.Array,
    iterations: int = 60,
) -> tuple[jax.Array, jax.Array]:
    """`economic_dispatch` in jax.numpy: (P (G,) MW, lambda $/MWh) for generator arrays (G,)
    and a scalar load. Jittable (no Python control flow on traced values; `iterations` is
    static). A load outside [sum Pmin, sum Pmax] is not an error here: the result saturates at
    all-Pmin or all-Pmax. Precision follows the inputs' dtype (float32 unless x64 is enabled).
    """
    import jax
    import jax.numpy as jnp

    args = tuple(jnp.asarray(x) for x in (cost_a, cost_b, pmin_mw, pmax_mw))
    dtype = jnp.result_type(*args, jnp.asarray(load_mw_total))
    args = tuple(x.astype(dtype) for x in args)
    load = jnp.asarray(load_mw_total, dtype)
    lam_low, lam_high = _bracket(jnp, *args)

    def halve(_, bracket):
        low, high = bracket
        lam = 0.5 * (low + high)
        below = jnp.sum(_supply(jnp, lam, *args)) < load
        return jnp.where(below, lam, low), jnp.where(below, high, lam)

    lam_low, lam_high = jax.lax.fori_loop(0, iterations, halve, (lam_low, lam_high))
    p_low, p_high = _supply(jnp, lam_low, *args), _supply(jnp, lam_high, *args)
    return _interpolate(jnp, lam_low, lam_high, p_low, p_high, load)


@dataclass(frozen=True, eq=False)
class DCOPFResult:
    """A DC-OPF solution. objective: generation cost ($/h, constant terms included). dispatch:
    (G,) MW. lmp: (B,) $/MWh, locational marginal prices (marginal cost of 1 MW more demand at
    each bus). flows: (L,) MW, from -> to. binding: indices of lines at their rating.
    load_mw: (B,) MW demand served. solve_seconds: wall time to build (PTDF included) and solve
    the QP."""

    objective: float
    dispatch: np.ndarray
    lmp: np.ndarray
    flows: np.ndarray
    binding: np.ndarray
    load_mw: np.ndarray
    solve_seconds: float


def _as_grid(case: str | Path | Grid) -> Grid:
    return case if isinstance(case, Grid) else load_case(case)


def solve_dcopf(case: str | Path | Grid, load_scale: float = 1.0) -> DCOPFResult:
    """DC optimal power flow: min sum_g a_g P_g^2 + b_g P_g + c_g subject to sum_g P_g =
    sum_b d_b, |PTDF (Cg P - d)| <= ratings (finite ones), Pmin <= P <= Pmax, with bus demand
    d = load_scale * load_mw + shunt_mw (MW). `case` is a case name, a case file or a Grid.

    Raises CaseError for a load_scale that is not a positive finite number and
    InfeasibleDispatch (a CaseError) when no dispatch meets the load.
    """
    try:
        scale = float(load_scale)
    except (TypeError, ValueError):
        raise CaseError(f"load_scale must be a number, got {load_scale!r:.40}") from None
    if not (np.isfinite(scale) and scale > 0):
        raise CaseError(f"load_scale must be positive and finite, got {load_scale!r:.40}")
    grid = _as_grid(case)
    start = time.perf_counter()
    demand = scale * grid.load_mw + grid.shunt_mw
    total = float(demand.sum())
    pmin, pmax = grid.gen_pmin_mw, grid.gen_pmax_mw
    if not pmin.sum() - 1e-9 <= total <= pmax.sum() + 1e-9:
        raise InfeasibleDispatch(
            f"{grid.name}: load {total:g} MW at load_scale {scale:g} is outside the "
            f"generation range [{pmin.sum():g}, {pmax.sum():g}] MW"
        )

    import clarabel

    factors = ptdf(grid)  # (L, B)
    gen_factors = factors[:, grid.gen_bus]  # (L, G): flow per MW from generator g
    base_flows = factors @ demand  # flows are gen_factors @ P - base_flows
    limited = np.flatnonzero(np.isfinite(grid.line_rating_mw))
    rating = grid.line_rating_mw[limited]
    n_gens, n_limited = grid.n_gens, limited.size
    eye = sp.identity(n_gens, format="csc")
    # Clarabel: min 1/2 P'QP + q'P  s.t.  A P + s = rhs, s in {0} x R+^m
    constraint = sp.vstack([
        sp.csc_matrix(np.ones((1, n_gens))),
        sp.csc_matrix(gen_factors[limited]),
        sp.csc_matrix(-gen_factors[limited]),
        eye,
        -eye,
    ], format="csc")
    rhs = np.concatenate([
        [total],
        rating + base_flows[limited],
        rating - base_flows[limited],
        pmax,
        -pmin,
    ])
    quadratic = sp.diags(2.0 * grid.cost_a, format="csc")
    cones = [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(2 * n_limited + 2 * n_gens)]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    solver = clarabel.DefaultSolver(quadratic, grid.cost_b, constraint, rhs, cones, settings)
    solution = solver.solve()
    status = str(solution.status)
    if status.endswith("PrimalInfeasible"):  # also AlmostPrimalInfeasible
        raise InfeasibleDispatch(
            f"{grid.name}: no dispatch meets the load at load_scale {scale:g} within the line "
            "limits"
        )
    if status != "Solved":
        raise CaseError(f"{grid.name}: the DC-OPF solver stopped with status {status}")

    dispatch_mw = np.clip(np.asarray(solution.x), pmin, pmax)
    duals = np.asarray(solution.z)
    # dual z of row A_i P <= rhs_i: d objective / d rhs_i = -z_i
    balance_price = -duals[0]
    upper = duals[1 : 1 + n_limited]
    lower = duals[1 + n_limited : 1 + 2 * n_limited]
    lmp = balance_price - factors[limited].T @ (upper - lower)
    flows = gen_factors @ dispatch_mw - base_flows
    slack = rating - np.abs(flows[limited])
    binding = limited[slack <= BINDING_TOLERANCE_MW * (1.0 + rating)]
    objective = float(
        np.sum(grid.cost_a * dispatch_mw**2 + grid.cost_b * dispatch_mw + grid.cost_c)
    )
    return DCOPFResult(
        objective=objective,
        dispatch=dispatch_mw,
        lmp=lmp,
        flows=flows,
        binding=binding,
        load_mw=demand,
        solve_seconds=time.perf_counter() - start,
    )
