"""The charging domain against dgpg's contract (`check_domain`), and its reference heuristic
against random. Run `pytest` in the package's folder."""

import jax
import jax.numpy as jnp
import pytest
from dgpg_charging import SPEC
from dgpg_charging.config import ChargingConfig

from dgpg import domains
from dgpg.domains import check_domain


@pytest.fixture(scope="module")
def domain():
    """The domain: found through its entry point once installed (`pip install -e .`), else
    registered for this process."""
    added = SPEC.name not in domains.names()
    if added:
        domains.register(SPEC)
    yield domains.get_domain(SPEC.name)
    if added:
        domains.unregister(SPEC.name)


def test_check_domain(domain):
    passed = check_domain(domain, ChargingConfig(n_agents=3))
    assert {"model marginal", "heuristic greedy", "heuristic random"} <= set(passed)


def test_the_reference_costs_less_than_random(domain):
    config = ChargingConfig(n_agents=4)

    def step_cost(name, key):
        k_reset, k_act, k_step = jax.random.split(key, 3)
        state = domain.reset(k_reset, config)
        actions = domain.heuristics[name](k_act, state, config)
        return domain.step(k_step, state, actions, config)[2]["cost"]

    keys = jax.random.split(jax.random.key(0), 64)
    cost = {name: float(jnp.mean(jax.jit(jax.vmap(lambda k, name=name: step_cost(name, k)))(
        keys))) for name in ("greedy", "random")}
    assert cost["greedy"] < cost["random"], cost
