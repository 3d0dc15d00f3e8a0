"""DC-OPF market clearing in pure JAX, with priced load shedding: one jittable QP per period.

    minimise   sum_g a_g P_g^2 + b_g P_g + c_g  +  VOLL sum_b shed_b                    ($/h)
    subject to sum_g P_g = sum_b (d_b - shed_b)
               |PTDF (Cg P - (d - shed))| <= rating        (lines with a finite rating)
               Pmin <= P <= Pmax,   0 <= shed_b <= max(d_b, 0)

`clearing_problem(grid)` precomputes the matrices once (NumPy); `clear(problem, demand_mw)`
clears one demand vector (B,) MW, under `jax.jit` and `jax.vmap`. Without shedding it is the
problem of `dispatch.solve_dcopf`, and the LMPs follow its sign convention. Precision follows
JAX's default float dtype: float32 unless x64 is enabled.

Method: qpax's primal-dual interior point (a fixed number of iterations), then an active-set
refinement: the constraints whose multiplier exceeds their slack are taken as binding, the KKT
equations with them as equalities are solved (LU, regularised iterative refinement), and the
guess is revised from that solution a few times (primal-dual active-set steps). The refined
solution is kept when it is primal and dual feasible to sqrt(machine epsilon) in the scaled
units (`converged`); otherwise the interior point's, less accurate, with `converged` False.
qpax alone stalls short of the optimum in float32 (it keeps slacks and duals above sqrt(eps));
the refinement brings float32 LMPs to about 1e-4 $/MWh of float64 on the IEEE cases.

Scaling: the variables are u_g = (P_g - Pmin_g) / (Pmax_g - Pmin_g) and the shed fraction
f_b = shed_b / max(d_b, 0), each in [0, 1], so that a unit with Pmin = Pmax or a bus without
positive demand has a zero column and an interior instead of a box of zero width. Powers are
per unit on the case's base MVA, line rows are divided by the rating in the interior point, and
the objective is divided by base MVA times `price_scale` $/MWh (`PRICE_DIVISOR`).

LMPs are unique only where the binding constraints are linearly independent. Lines in series
with equal ratings (as `grid.with_limits` makes them: equal flows, equal ratings) bind together,
and the split of their congestion price between them, hence the LMPs of the buses between them,
is arbitrary: any such split is a valid answer, and two solvers may differ there.

Feasibility: shedding every load with every unit at Pmin is feasible when Pmin = 0 and no
demand is negative (every PYPOWER case but case300, whose negative loads cannot be shed), and
then every demand clears. Where no feasible point exists, `converged` is False.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import qpax
from flax import struct

from dgpg.domains.power.grid import CaseError, Grid, ptdf

# Value of lost load, $/MWh: the cost of one MWh of demand left unserved. 10,000 $/MWh is the
# order of published VOLL estimates and of US market offer caps, and over 100 times any unit's
# marginal cost in the IEEE cases, so a clearing sheds only load that no dispatch can serve.
VOLL = 10_000.0

# qpax's interior point: the iteration cap, and a KKT residual (scaled units) below which it
# stops earlier; qpax keeps slacks and duals above sqrt(machine epsilon), so the residual rarely
# gets there and the active-set refinement supplies the last digits. Fewer iterations leave a
# wrong guess of the binding constraints in some cases with shedding (20 did, in float32 and
# float64); the refinement then fails and `converged` is False.
MAX_ITERATIONS = 30
TOLERANCE = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-10}
# active-set refinement: primal-dual active-set rounds, each an LU factorisation of the KKT
# matrix, shifted by the regularisation (per dtype), and iterative-refinement steps per round
ROUNDS = 3
REGULARISATION = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}
REFINEMENTS = 4
# scaled prices: $/MWh divided by the largest marginal cost of any unit at Pmax over this; with
# prices of order one, float32 interior points stalled short of the optimum (qpax's floor of
# sqrt(eps) on the duals of slack constraints is then large against the real duals)
PRICE_DIVISOR = 10.0


@struct.dataclass
class ClearingProblem:
    """A grid's clearing, precomputed by `clearing_problem`. Arrays are NumPy float64 (a
    pytree: pass it to a jitted function or close over it); B buses, L lines, G generators,
    R rated lines (finite rating), powers per unit (pu) on base_mva.

    gen_bus (G,) bus index; pmin_pu, span_pu (G,) Pmin and Pmax - Pmin; cost_a ($/MW^2h),
    cost_b ($/MWh), cost_c ($/h) (G,); ptdf (L, B) MW of flow per MW injected; rated (R,) line
    indices; rating_pu (R,); base_mva; price_scale $/MWh; voll $/MWh.
    """

    gen_bus: np.ndarray
    pmin_pu: np.ndarray
    span_pu: np.ndarray
    cost_a: np.ndarray
    cost_b: np.ndarray
    cost_c: np.ndarray
    ptdf: np.ndarray
    rated: np.ndarray
    rating_pu: np.ndarray
    base_mva: float = struct.field(pytree_node=False)
    price_scale: float = struct.field(pytree_node=False)
    voll: float = struct.field(pytree_node=False)

    @property
    def n_buses(self) -> int:
        """B."""
        return self.ptdf.shape[1]

    @property
    def n_gens(self) -> int:
        """G."""
        return self.gen_bus.shape[0]


@struct.dataclass
class Clearing:
    """One period's clearing. cost: $/h, generation cost (constant terms included) plus VOLL
    times the shed MW. dispatch (G,) MW; shed (B,) MW; flows (L,) MW, from -> to; lmp (B,)
    $/MWh, lmp = balance price - PTDF_R^T (mu_upper - mu_lower); congestion (L,) $/MWh per MW
    of flow, mu_upper - mu_lower (zero on unrated lines); converged: bool, the refined solution
    passed its optimality check (else the values are the interior point's); iterations:
    interior-point iterations. Under `jax.vmap` every field has a leading batch axis."""

    cost: jax.Array
    dispatch: jax.Array
    shed: jax.Array
    flows: jax.Array
    lmp: jax.Array
    congestion: jax.Array
    converged: jax.Array
    iterations: jax.Array


def clearing_problem(grid: Grid, voll: float = VOLL) -> ClearingProblem:
    """Precompute the clearing of `grid` (NumPy, float64). voll: value of lost load, $/MWh,
    above every unit's marginal cost. Raises CaseError for a voll that is not positive."""
    voll = float(voll)
    if not (np.isfinite(voll) and voll > 0):
        raise CaseError(f"{grid.name}: voll must be positive and finite, got {voll!r}")
    base = grid.base_mva
    rated = np.flatnonzero(np.isfinite(grid.line_rating_mw))
    marginal = grid.cost_b + 2.0 * grid.cost_a * grid.gen_pmax_mw
    return ClearingProblem(
        gen_bus=grid.gen_bus.copy(),
        pmin_pu=grid.gen_pmin_mw / base,
        span_pu=(grid.gen_pmax_mw - grid.gen_pmin_mw) / base,
        cost_a=grid.cost_a.copy(),
        cost_b=grid.cost_b.copy(),
        cost_c=grid.cost_c.copy(),
        ptdf=ptdf(grid),
        rated=rated,
        rating_pu=grid.line_rating_mw[rated] / base,
        base_mva=base,
        price_scale=float(max(np.max(np.abs(marginal)), 1.0)) / PRICE_DIVISOR,
        voll=voll,
    )


class _QP(NamedTuple):
    """The scaled QP in x = [u (G), f (B)], each in [0, 1]: min 1/2 x'diag(hessian)x + linear'x
    s.t. balance x = balance_rhs, flow x <= upper, -flow x <= lower, 0 <= x <= 1."""

    hessian: jax.Array  # (n,)
    linear: jax.Array  # (n,)
    balance: jax.Array  # (n,)
    balance_rhs: jax.Array  # ()
    flow: jax.Array  # (R, n) pu of flow per unit of x
    upper: jax.Array  # (R,) pu
    lower: jax.Array  # (R,) pu
    rating: jax.Array  # (R,) pu
    box_weight: jax.Array  # (n,) scale of the rows x >= 0 in the interior point


def _assemble(problem: ClearingProblem, demand_pu: jax.Array, dtype) -> _QP:
    base, scale = problem.base_mva, problem.price_scale
    pmin, span = jnp.asarray(problem.pmin_pu, dtype), jnp.asarray(problem.span_pu, dtype)
    cost_a = jnp.asarray(problem.cost_a, dtype)
    cost_b = jnp.asarray(problem.cost_b, dtype)
    limited = jnp.asarray(problem.ptdf, dtype)[problem.rated]  # (R, B)
    gen_limited = limited[:, problem.gen_bus]  # (R, G)
    rating = jnp.asarray(problem.rating_pu, dtype)
    sheddable = jnp.maximum(demand_pu, 0.0)
    base_flow = limited @ demand_pu - gen_limited @ pmin  # flows = flow x - base_flow
    return _QP(
        hessian=jnp.concatenate([2.0 * cost_a * base * span**2 / scale,
                                 jnp.zeros_like(sheddable)]),
        linear=jnp.concatenate([(2.0 * cost_a * pmin * base + cost_b) * span / scale,
                                problem.voll / scale * sheddable]),
        balance=jnp.concatenate([span, sheddable]),
        balance_rhs=jnp.sum(demand_pu) - jnp.sum(pmin),
        flow=jnp.concatenate([gen_limited * span, limited * sheddable], axis=1),
        upper=rating + base_flow,
        lower=rating - base_flow,
        rating=rating,
        # a shed fraction's bound has a dual of about VOLL / price_scale times the bus's demand
        # (pu): rows scaled by that weight have duals of order one, like the others
        box_weight=jnp.concatenate([jnp.ones_like(span), jnp.maximum(
            problem.voll / scale * sheddable, 1.0)]),
    )


def _interior_point(qp: _QP, dtype):
    """qpax's interior point on `qp`: x (n,), the balance dual (), the multipliers (of the line
    rows upper and lower (R,), of x <= 1 and of x >= 0 (n,)) and the iteration count."""
    n_rated, n_vars = qp.flow.shape
    # rows scaled to slacks of order one: a line's by its rating, a shed fraction's lower bound
    # by the order of its dual
    unit = qp.flow / qp.rating[:, None]
    inequality = jnp.concatenate([unit, -unit, jnp.eye(n_vars, dtype=dtype),
                                  -jnp.diag(qp.box_weight)])
    rhs = jnp.concatenate([qp.upper / qp.rating, qp.lower / qp.rating, jnp.ones(n_vars, dtype),
                           jnp.zeros(n_vars, dtype)])
    x, _, z, y, _, iterations = qpax.solve_qp(
        jnp.diag(qp.hessian), qp.linear, qp.balance[None, :], qp.balance_rhs[None],
        inequality, rhs, solver_tol=TOLERANCE[np.dtype(dtype)], max_iter=MAX_ITERATIONS,
    )
    cuts = [n_rated, 2 * n_rated, 2 * n_rated + n_vars]
    line_up, line_lo, box_up, box_lo = jnp.split(z, cuts)
    multipliers = (line_up / qp.rating, line_lo / qp.rating, box_up, box_lo * qp.box_weight)
    return x, y[0], multipliers, iterations


class _Active(NamedTuple):
    """A guess of the binding constraints: lines at their upper or lower limit (R,) and
    variables at 1 or at 0 (n,), bool."""

    line_up: jax.Array
    line_lo: jax.Array
    at_up: jax.Array
    at_lo: jax.Array


def _active(qp: _QP, x: jax.Array, multipliers) -> _Active:
    """Constraints whose multiplier exceeds their slack (rows in the interior point's scaling),
    so that a violated constraint is taken as binding and one of negative multiplier is not."""
    mu_up, mu_lo, nu_up, nu_lo = multipliers
    flows = qp.flow @ x
    line_up = mu_up * qp.rating > (qp.upper - flows) / qp.rating
    at_up = nu_up > 1.0 - x
    return _Active(
        line_up=line_up,
        line_lo=(mu_lo * qp.rating > (qp.lower + flows) / qp.rating) & ~line_up,
        at_up=at_up,
        at_lo=(nu_lo > x) & ~at_up,
    )


def _solve_active(qp: _QP, active: _Active, x, y, w, dtype):
    """The KKT equations of the QP with the `active` constraints as equalities, solved by
    regularised iterative refinement from (x (n,), y (), w (R,)); w = mu_upper - mu_lower."""
    n_rated, n_vars = qp.flow.shape
    size = n_vars + 1 + n_rated
    fixed = active.at_up | active.at_lo
    line_on = active.line_up | active.line_lo
    eye = jnp.eye(size, dtype=dtype)
    zero = jnp.zeros((), dtype)
    # unknowns [x, y, w]; rows: stationarity of each free variable (x_j = its bound for a fixed
    # one), the balance, each binding line at its limit (w_l = 0 for the others)
    stationarity = jnp.concatenate([jnp.diag(qp.hessian), qp.balance[:, None], qp.flow.T], 1)
    flow_rows = jnp.concatenate([qp.flow, jnp.zeros((n_rated, 1 + n_rated), dtype)], axis=1)
    kkt = jnp.concatenate([
        jnp.where(fixed[:, None], eye[:n_vars], stationarity),
        jnp.concatenate([qp.balance, jnp.zeros(1 + n_rated, dtype)])[None, :],
        jnp.where(line_on[:, None], flow_rows, eye[n_vars + 1 :]),
    ])
    rhs = jnp.concatenate([
        jnp.where(fixed, active.at_up.astype(dtype), -qp.linear),
        qp.balance_rhs[None],
        jnp.where(active.line_up, qp.upper, jnp.where(active.line_lo, -qp.lower, zero)),
    ])
    delta = REGULARISATION[np.dtype(dtype)]
    shift = jnp.concatenate([jnp.where(fixed, zero, delta), jnp.full(1, -delta, dtype),
                             jnp.where(line_on, -delta, zero)])
    factors = jax.scipy.linalg.lu_factor(kkt + jnp.diag(shift))
    v = jnp.concatenate([x, y[None], jnp.where(line_on, w, zero)])
    for _ in range(REFINEMENTS):
        v = v + jax.scipy.linalg.lu_solve(factors, rhs - kkt @ v)
    return v[:n_vars], v[n_vars], v[n_vars + 1 :]


def _gradient(qp: _QP, x, y, w):
    """Gradient of the Lagrangian without the bound terms (n,): minus the bound multipliers."""
    return qp.hessian * x + qp.linear + qp.balance * y + qp.flow.T @ w


def _refine(qp: _QP, x, y, multipliers, dtype):
    """Active-set refinement of an interior point: guess the binding constraints, solve the
    KKT equations with them as equalities, guess again from that solution's multipliers and
    slacks (a primal-dual active-set step), `ROUNDS` times. Returns (x (n,), balance dual (),
    line duals w = mu_upper - mu_lower (R,), ok): ok when the last solution is primal and dual
    feasible within `_tolerance(dtype)`, as a correct guess makes it and a wrong one does not."""
    zero = jnp.zeros((), dtype)

    def round_(_, carry):
        x, y, multipliers = carry
        active = _active(qp, x, multipliers)
        x, y, w = _solve_active(qp, active, x, y, multipliers[0] - multipliers[1], dtype)
        gradient = _gradient(qp, x, y, w)
        multipliers = (jnp.where(active.line_up, w, zero), jnp.where(active.line_lo, -w, zero),
                       jnp.where(active.at_up, -gradient, zero),
                       jnp.where(active.at_lo, gradient, zero))
        return x, y, multipliers

    x, y, multipliers = jax.lax.fori_loop(0, ROUNDS, round_, (x, y, multipliers))
    w = multipliers[0] - multipliers[1]
    active = _active(qp, x, multipliers)
    tol = _tolerance(dtype)
    flows = qp.flow @ x
    gradient = _gradient(qp, x, y, w)
    # dual quantities are checked relative to the size of the terms they sum
    terms = (jnp.abs(qp.hessian * x) + jnp.abs(qp.linear) + jnp.abs(qp.balance * y)
             + jnp.abs(qp.flow.T) @ jnp.abs(w))
    dual_size = 1.0 + jnp.abs(y) + jnp.max(jnp.abs(w), initial=0.0)
    fixed = active.at_up | active.at_lo
    ok = (
        jnp.all(jnp.isfinite(x)) & jnp.isfinite(y) & jnp.all(jnp.isfinite(w))
        & jnp.all((x >= -tol) & (x <= 1.0 + tol))
        & jnp.all((flows <= qp.upper + tol) & (-flows <= qp.lower + tol))
        & (jnp.abs(qp.balance @ x - qp.balance_rhs) <= tol)
        & jnp.all(jnp.concatenate(multipliers[:2]) >= -tol * dual_size)
        & jnp.all((multipliers[2] >= -tol * (1.0 + terms))
                  & (multipliers[3] >= -tol * (1.0 + terms)))
        & jnp.all(jnp.where(fixed, True, jnp.abs(gradient) <= tol * (1.0 + terms)))
    )
    return x, y, w, ok


def _tolerance(dtype) -> float:
    """Feasibility and optimality tolerance of an accepted refinement, in the QP's scaled units
    (pu, price_scale): the square root of the dtype's machine epsilon."""
    return float(np.sqrt(np.finfo(dtype).eps))


def clear(problem: ClearingProblem, demand_mw: jax.Array) -> Clearing:
    """Clear demand (B,) MW on `problem`: least-cost dispatch with priced shedding. Pure and
    jittable; vmap it over a batch of demands (N, B). Precision: JAX's default float dtype."""
    dtype = jnp.result_type(float)
    base, scale = problem.base_mva, problem.price_scale
    demand_mw = jnp.asarray(demand_mw, dtype)
    qp = _assemble(problem, demand_mw / base, dtype)
    x_ipm, y_ipm, multipliers, iterations = _interior_point(qp, dtype)
    x, y, w, ok = _refine(qp, x_ipm, y_ipm, multipliers, dtype)
    x = jnp.clip(jnp.where(ok, x, x_ipm), 0.0, 1.0)
    y = jnp.where(ok, y, y_ipm)
    w = jnp.where(ok, w, multipliers[0] - multipliers[1])

    n_gens = problem.n_gens
    factors = jnp.asarray(problem.ptdf, dtype)
    pmin, span = jnp.asarray(problem.pmin_pu, dtype), jnp.asarray(problem.span_pu, dtype)
    dispatch = (pmin + span * x[:n_gens]) * base
    shed = jnp.maximum(demand_mw, 0.0) * x[n_gens:]
    congestion_rated = scale * w
    lmp = -scale * y - factors[problem.rated].T @ congestion_rated
    injection = jnp.zeros(problem.n_buses, dtype).at[problem.gen_bus].add(dispatch)
    flows = factors @ (injection - demand_mw + shed)
    congestion = jnp.zeros(factors.shape[0], dtype).at[problem.rated].set(congestion_rated)
    cost_a, cost_b = jnp.asarray(problem.cost_a, dtype), jnp.asarray(problem.cost_b, dtype)
    cost = (jnp.sum(cost_a * dispatch**2 + cost_b * dispatch + jnp.asarray(problem.cost_c, dtype))
            + problem.voll * jnp.sum(shed))
    return Clearing(cost=cost, dispatch=dispatch, shed=shed, flows=flows, lmp=lmp,
                    congestion=congestion, converged=ok, iterations=iterations)
