"""`check_domain`: the conformance test a domain author runs, like Stable-Baselines3's `check_env`
or PettingZoo's `parallel_api_test`.

    from dgpg.domains import check_domain, get_domain
    check_domain(get_domain("mine"), MineConfig(n_agents=3))

Each rule is checked on a small configuration; the first one broken raises `DomainCheckError`
(an AssertionError) whose message starts with the rule's name. It returns the names of the rules
that passed. The rules: the configuration's contract (J and K as the spec names them), the
shapes and dtypes of every function's output, `jit` and `vmap` equal to eager, determinism under
a key, `metrics["reward"]` equal to the reward, every model's reference with (N, J)-leading
leaves and a guidance loss that is non-negative and zero where the model's own greedy choice is,
the loss under `vmap` over steps with a subsample of agents (what the update does), for each
declared model error that the environment keeps the truth, the heuristics' actions in range, the
episode metrics and the compacted actor's buffer size. `check_contract(domain, config)` runs the
cheap ones (imports and shapes, traced, not compiled) that the command line runs before any
compilation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dgpg.domains.domain import Domain
from dgpg.domains.fields import MODEL_ERROR_FIELDS
from dgpg.domains.observation import Observation


class DomainCheckError(AssertionError):
    """A rule of the domain contract that the domain breaks; the message names it."""


def _require(condition: Any, rule: str, detail: str) -> None:
    if not bool(condition):
        raise DomainCheckError(f"{rule}: {detail}")


def _equal(a: Any, b: Any, rule: str, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    _require(tree_a == tree_b, rule, f"{what}: the two results have different structures")
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        _require(x.shape == y.shape and x.dtype == y.dtype, rule,
                 f"{what}: shape/dtype {x.shape} {x.dtype} against {y.shape} {y.dtype}")
        if np.issubdtype(x.dtype, np.floating):
            _require(np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True), rule,
                     f"{what}: values differ (max {np.max(np.abs(x - y)):.3g})")
        else:
            _require(np.array_equal(x, y), rule, f"{what}: values differ")


def _same_layout(a: Any, b: Any, rule: str, what: str) -> None:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    _require(ta == tb, rule, f"{what}: the pytree structure changed")
    for x, y in zip(la, lb, strict=True):
        _require(jnp.shape(x) == jnp.shape(y) and jnp.result_type(x) == jnp.result_type(y),
                 rule, f"{what}: a leaf changed from {jnp.shape(y)} {jnp.result_type(y)} to "
                       f"{jnp.shape(x)} {jnp.result_type(x)}")


def _declared_shape_problem(domain: Domain, config: Any, J: int, K: int) -> str | None:
    """Why the configuration's fields that the spec names as J and K disagree with the
    observation's J and K, or None."""
    spec = domain.spec
    for field, size, what in ((spec.slots_per_agent, J, "J (slots per agent)"),
                              (spec.candidates_per_slot, K, "K (candidates per slot)")):
        declared = getattr(config, field, None) if field is not None else size
        if declared != size:
            return (f"the spec names config.{field} as {what}, which is {declared!r}; the "
                    f"observation has {size}")
    return None


def check_contract(domain: Domain, config: Any) -> None:
    """The cheap rules of the contract, checked before anything compiles (`dgpg train`,
    `evaluate` and `reproduce` run them): every heuristic and model importable, and the shapes
    and dtypes of `reset`, `observe` and `step` by `jax.eval_shape` (traced, not compiled): an
    `Observation` of (N, K, Fc), (N, J, Fs), (N, Fx) float32 and an (N, J) bool mask, J and K
    as the spec names them, a scalar float reward, scalar metrics and a next state of the same
    layout. Raises DomainCheckError (one line, naming the domain and the rule)."""
    from dgpg.domains.spec import DomainError, load_object

    name = domain.name

    def require(condition: Any, rule: str, detail: str) -> None:
        _require(condition, f"domain {name}: {rule}", detail)

    try:
        domain.heuristics  # noqa: B018 (imports every heuristic)
        for model, path in domain.spec.models.items():
            load_object(path, f"model {model!r} of domain {name}")
    except DomainError as e:
        raise DomainCheckError(f"domain {name}: {e}") from None
    N = config.n_agents
    key = jax.random.key(0)
    try:
        state = jax.eval_shape(lambda k: domain.reset(k, config), key)
        obs = jax.eval_shape(lambda s: domain.observe(s, config), state)
    except Exception as e:  # a plug-in's own error, whatever it is
        raise DomainCheckError(f"domain {name}: reset or observe fails: {type(e).__name__}: "
                               f"{' '.join(str(e).split())}"[:300]) from None
    require(isinstance(obs, Observation), "observe",
            f"observe must return an Observation, got {type(obs).__name__}")
    shapes = {f: (getattr(obs, f).shape, getattr(obs, f).dtype)
              for f in ("candidates", "slots", "context", "slot_mask")}
    require(len(shapes["candidates"][0]) == 3 and shapes["candidates"][0][0] == N, "observe",
            f"candidates must be (N, K, Fc) with N = {N}, got {shapes['candidates'][0]}")
    require(len(shapes["slots"][0]) == 3 and shapes["slots"][0][0] == N, "observe",
            f"slots must be (N, J, Fs) with N = {N}, got {shapes['slots'][0]}")
    require(len(shapes["context"][0]) == 2 and shapes["context"][0][0] == N, "observe",
            f"context must be (N, Fx) with N = {N}, got {shapes['context'][0]}")
    K, J = shapes["candidates"][0][1], shapes["slots"][0][1]
    require(shapes["slot_mask"] == ((N, J), jnp.bool_), "observe",
            f"slot_mask must be (N, J) = {(N, J)} bool, got {shapes['slot_mask'][0]} "
            f"{shapes['slot_mask'][1]}")
    for field in ("candidates", "slots", "context"):
        require(shapes[field][1] == jnp.float32, "observe",
                f"{field} must be float32, got {shapes[field][1]}")
    problem = _declared_shape_problem(domain, config, J, K)
    require(problem is None, "observe", problem)
    actions = jax.ShapeDtypeStruct((N, J), jnp.int32)
    try:
        out = jax.eval_shape(lambda k, s, a: domain.step(k, s, a, config), key, state, actions)
    except Exception as e:
        raise DomainCheckError(f"domain {name}: step fails on actions (N, J) = {(N, J)}: "
                               f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]) from None
    require(isinstance(out, tuple) and len(out) == 3, "step",
            "step must return (state, reward, metrics)")
    next_state, reward, metrics = out
    require(jax.tree.structure(next_state) == jax.tree.structure(state) and all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(jax.tree.leaves(next_state), jax.tree.leaves(state), strict=True)),
        "step", "the next state must have the layout of the state (lax.scan needs it)")
    require(getattr(reward, "shape", None) == () and jnp.issubdtype(reward.dtype, jnp.floating),
            "step", f"the reward must be a float scalar (the team's), got shape "
                    f"{getattr(reward, 'shape', type(reward).__name__)}")
    require(isinstance(metrics, dict) and all(
        isinstance(k, str) and getattr(v, "shape", None) == () for k, v in metrics.items()),
        "step", "metrics must be a dict of named scalars")


def check_domain(domain: Domain, config: Any, seed: int = 0) -> list[str]:
    """Check `domain` against its contract on `config` (use a small N, e.g. 3); returns the rules
    that passed, raises DomainCheckError naming the first rule broken."""
    passed: list[str] = []

    def ok(rule: str) -> None:
        passed.append(rule)

    # ------------------------------------------------------------------ configuration
    rule = "config"
    _require(dataclasses.is_dataclass(config) and not isinstance(config, type), rule,
             f"the configuration must be a dataclass instance, got {type(config).__name__}")
    _require(type(config).__dataclass_params__.frozen, rule,
             "the configuration must be a frozen dataclass (a static argument of jit)")
    try:
        hash(config)
    except TypeError as e:
        raise DomainCheckError(f"{rule}: the configuration must be hashable ({e})") from None
    for field in ("n_agents", "episode_steps"):
        _require(isinstance(getattr(config, field, None), int), rule,
                 f"the configuration needs an integer field {field!r}")
    _require(isinstance(config, domain.config_type), rule,
             f"the spec's configuration is {domain.config_type.__name__}, got "
             f"{type(config).__name__}")
    try:
        domain.config_type(n_agents=config.n_agents)
    except Exception as e:
        raise DomainCheckError(f"{rule}: the configuration must be buildable from n_agents "
                               f"alone ({type(e).__name__}: {e})") from None
    named = getattr(type(config), "domain", domain.name)
    _require(named == domain.name, rule, f"the configuration's class attribute domain is "
                                         f"{named!r}, not {domain.name!r}")
    ok(rule)
    N = config.n_agents
    key = jax.random.key(seed)
    k_reset, k_step, k_act, k_probs = jax.random.split(key, 4)

    # ------------------------------------------------------------------ reset
    rule = "reset"
    reset = jax.jit(domain.reset, static_argnums=1)
    state = reset(k_reset, config)
    _equal(state, reset(k_reset, config), rule, "reset twice with one key")
    _equal(domain.reset(k_reset, config), state, rule, "jit(reset) against reset")
    ok(rule)

    # ------------------------------------------------------------------ observe
    rule = "observe"
    obs = domain.observe(state, config)
    _require(isinstance(obs, Observation), rule,
             f"observe must return an Observation, got {type(obs).__name__}")
    _require(obs.candidates.ndim == 3 and obs.candidates.shape[0] == N, rule,
             f"candidates must be (N, K, Fc), got {obs.candidates.shape}")
    K = obs.candidates.shape[1]
    _require(obs.slots.ndim == 3 and obs.slots.shape[0] == N, rule,
             f"slots must be (N, J, Fs), got {obs.slots.shape}")
    J = obs.slots.shape[1]
    _require(obs.context.ndim == 2 and obs.context.shape[0] == N, rule,
             f"context must be (N, Fx), got {obs.context.shape}")
    _require(obs.slot_mask.shape == (N, J) and obs.slot_mask.dtype == jnp.bool_, rule,
             f"slot_mask must be (N, J) bool, got {obs.slot_mask.shape} {obs.slot_mask.dtype}")
    problem = _declared_shape_problem(domain, config, J, K)
    _require(problem is None, rule, problem)
    for name in ("candidates", "slots", "context"):
        x = getattr(obs, name)
        _require(x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(x))), rule,
                 f"{name} must be finite float32, got {x.dtype}")
    _equal(obs, jax.jit(domain.observe, static_argnums=1)(state, config), rule,
           "jit(observe) against observe")
    ok(rule)

    # ------------------------------------------------------------------ step
    rule = "step"
    actions = jax.random.randint(k_act, (N, J), 0, K, dtype=jnp.int32)
    step = jax.jit(domain.step, static_argnums=3)
    out = step(k_step, state, actions, config)
    _require(isinstance(out, tuple) and len(out) == 3, rule,
             "step must return (state, reward, metrics)")
    next_state, reward, metrics = out
    _same_layout(next_state, state, rule, "the next state (lax.scan needs a fixed layout)")
    _require(jnp.shape(reward) == () and jnp.issubdtype(jnp.result_type(reward), jnp.floating),
             rule, f"reward must be a float scalar, got {jnp.shape(reward)}")
    _require(bool(jnp.isfinite(reward)), rule, "reward is not finite")
    _require(isinstance(metrics, dict) and all(isinstance(k, str) for k in metrics), rule,
             "metrics must be a dict keyed by names")
    for name, value in metrics.items():
        _require(jnp.shape(value) == (), rule, f"metric {name!r} must be a scalar, got "
                                               f"{jnp.shape(value)}")
    _equal(out, step(k_step, state, actions, config), rule, "step twice with one key")
    _equal(domain.step(k_step, state, actions, config), out, rule, "jit(step) against step",
           rtol=1e-4, atol=1e-5)
    ok(rule)
    rule = "reward metric"
    if "reward" in metrics:
        _require(np.allclose(metrics["reward"], reward, rtol=1e-6, atol=1e-6), rule,
                 "metrics['reward'] must equal the reward step returns (or be left out)")
    ok(rule)
    rule = "vmap"
    keys = jax.random.split(k_step, 2)
    states = jax.jit(jax.vmap(domain.reset, in_axes=(0, None)), static_argnums=1)(keys, config)
    batched = jax.jit(jax.vmap(domain.step, in_axes=(0, 0, None, None)), static_argnums=3)(
        keys, states, actions, config)
    for i in range(2):
        one_state = jax.tree.map(lambda x, i=i: x[i], states)
        _equal(one_state, reset(keys[i], config), rule,
               f"vmap(reset) against reset, episode {i}")
        one_step = step(keys[i], one_state, actions, config)
        _equal(jax.tree.map(lambda x, i=i: x[i], batched), one_step, rule,
               f"vmap(step) against step, episode {i}", rtol=1e-4, atol=1e-5)
    ok(rule)

    # ------------------------------------------------------------------ critic and actor inputs
    rule = "global_state"
    entities, context = domain.global_state(state, config)
    _require(entities.ndim == 2 and context.ndim == 1, rule,
             f"global_state must be (entities (E, F), context (Fx,)), got {entities.shape}, "
             f"{context.shape}")
    _require(bool(jnp.all(jnp.isfinite(entities))) and bool(jnp.all(jnp.isfinite(context))),
             rule, "global_state is not finite")
    ok(rule)
    rule = "pair_features"
    for derived in (True, False):
        features = domain.pair_features(obs, derived)
        _require(features.ndim == 4 and features.shape[:3] == (N, J, K), rule,
                 f"pair_features(obs, derived={derived}) must be (N, J, K, F), got "
                 f"{features.shape}")
        _require(bool(jnp.all(jnp.isfinite(features))), rule, "pair features are not finite")
    ok(rule)
    rule = "slot_capacity"
    capacity = domain.slot_capacity(N, config)
    _require(isinstance(capacity, int) and 1 <= capacity <= N * J, rule,
             f"slot_capacity(N, config) must be an int in [1, N * J], got {capacity!r}")
    ok(rule)

    # ------------------------------------------------------------------ models
    probs = jax.nn.softmax(jax.random.normal(k_probs, (N, J, K)), axis=-1)
    for name in domain.spec.models:
        rule = f"model {name}"
        model = domain.make_model(name, config)
        reference = model.reference(state, probs)
        for leaf in jax.tree.leaves(reference):
            _require(jnp.shape(leaf)[:2] == (N, J), rule,
                     f"every leaf of the reference must lead with (N, J) = {(N, J)} (the update "
                     f"subsamples agents), got {jnp.shape(leaf)}")
        loss = model.guidance_loss(probs, reference)
        _require(jnp.shape(loss) == () and bool(jnp.isfinite(loss)), rule,
                 "guidance_loss must be a finite scalar")
        _require(float(loss) >= -1e-6, rule, f"guidance_loss must be >= 0, got {float(loss)}")
        uniform = jnp.full((N, J, K), 1.0 / K)
        _require(float(model.guidance_loss(uniform, reference)) >= -1e-6, rule,
                 "guidance_loss must be >= 0 at the uniform policy")
        # the model's greedy choice: where its gradient points (linear losses) or its minimiser
        grad = jax.grad(model.guidance_loss)(probs, reference)
        greedy = jax.nn.one_hot(jnp.argmin(grad, axis=-1), K)
        mid = 0.5 * (greedy + uniform)
        linear = np.isclose(float(model.guidance_loss(mid, reference)),
                            0.5 * float(model.guidance_loss(greedy, reference)
                                        + model.guidance_loss(uniform, reference)),
                            rtol=1e-4, atol=1e-6)
        at_greedy = model.guidance_loss(greedy if linear else _minimiser(model, reference,
                                                                         uniform), reference)
        scale = max(float(model.guidance_loss(uniform, reference)), 1e-6)
        tolerance = 1e-4 if linear else 1e-2  # a minimiser found by descent is approximate
        _require(abs(float(at_greedy)) <= tolerance * scale + 1e-6, rule,
                 f"guidance_loss must be 0 at the model's greedy choice, got "
                 f"{float(at_greedy):.3g} (at the uniform policy: {scale:.3g})")
        # what the update does: vmap over steps, a subsample of the agents
        steps = jax.tree.map(lambda x: jnp.stack([x, x]), reference)
        some = jnp.arange(min(N, 2))
        sub_ref = jax.tree.map(lambda x, some=some: x[:, some], steps)
        sub_probs = jnp.stack([probs, probs])[:, some]
        try:
            losses = jax.jit(jax.vmap(model.guidance_loss))(sub_probs, sub_ref)
        except Exception as e:
            raise DomainCheckError(f"{rule}: guidance_loss fails under vmap over steps with a "
                                   f"subsample of agents ({type(e).__name__}: {e})"[:400]) \
                from None
        _require(losses.shape == (2,), rule, "vmapped guidance_loss must give one loss per step")
        ok(rule)

    # ------------------------------------------------------------------ misspecified models
    for kind in domain.spec.model_errors:
        rule = f"model error {kind}"
        missing = [f for f in MODEL_ERROR_FIELDS if not hasattr(config, f)]
        _require(not missing, rule, f"a domain that declares model errors needs the "
                                    f"configuration fields {', '.join(missing)}")
        try:
            wrong = dataclasses.replace(config, model_error=0.3, model_error_kind=kind)
        except (TypeError, ValueError) as e:
            raise DomainCheckError(f"{rule}: model_error=0.3, model_error_kind={kind!r} is "
                                   f"refused ({e})") from None
        _equal(reset(k_reset, wrong), state, rule, "reset with a misspecified model (the "
                                                   "environment must keep the truth)")
        _equal(step(k_step, state, actions, wrong), out, rule,
               "step with a misspecified model (the environment must keep the truth)")
        for name in domain.spec.models:
            domain.make_model(name, wrong).reference(state, probs)  # builds and runs
        ok(rule)

    # ------------------------------------------------------------------ heuristics
    for name, heuristic in domain.heuristics.items():
        rule = f"heuristic {name}"
        chosen = jax.jit(heuristic, static_argnums=2)(k_act, state, config)
        _require(chosen.shape == (N, J) and jnp.issubdtype(chosen.dtype, jnp.integer), rule,
                 f"actions must be (N, J) integers, got {chosen.shape} {chosen.dtype}")
        _require(bool(jnp.all((chosen >= 0) & (chosen < K))), rule,
                 f"actions must lie in [0, K) = [0, {K})")
        ok(rule)

    # ------------------------------------------------------------------ episode metrics
    rule = "episode_metrics"
    per_step = {**jax.tree.map(lambda x: jnp.stack([x, x]), metrics),
                "reward": jnp.stack([reward, reward])}
    summary = domain.episode_metrics(per_step)
    _require(isinstance(summary, dict) and next(iter(summary), None) == "return", rule,
             "episode_metrics must return a dict whose first key is 'return'")
    _require(np.isclose(float(summary["return"]), 2 * float(reward), rtol=1e-5), rule,
             "episode 'return' must be the summed reward")
    missing = [m for m in domain.spec.table_metrics if m not in summary]
    _require(not missing, rule, f"the spec's table_metrics {missing} are not episode metrics")
    missing = [m for m in domain.train_metrics if m not in metrics]
    _require(not missing, rule, f"train_metrics {missing} are not metrics of step")
    ok(rule)
    return passed


def _minimiser(model: Any, reference: Any, start: jax.Array, steps: int = 1000) -> jax.Array:
    """The policy that minimises a model's guidance loss, by gradient descent on logits."""
    import optax

    optimiser = optax.adam(0.1)

    def loss(logits):
        return model.guidance_loss(jax.nn.softmax(logits, axis=-1), reference)

    def step(carry, _):
        logits, state = carry
        updates, state = optimiser.update(jax.grad(loss)(logits), state)
        return (optax.apply_updates(logits, updates), state), None

    logits = jnp.log(start)
    (logits, _), _ = jax.lax.scan(step, (logits, optimiser.init(logits)), None, length=steps)
    return jax.nn.softmax(logits, axis=-1)
