"""Any dgpg domain as a batched TorchRL environment, `DomainEnv`.

    from dgpg.torchrl import DomainEnv
    env = DomainEnv("cloud", n_agents=50, episode_steps=50, batch_size=[8], seed=0)
    rollout = env.rollout(50)       # random actions; a TensorDict of batch size (8, 50)

Needs torch and TorchRL, which are not dependencies of dgpg (see docs/guides/torch.md); this
module is imported only by whoever uses it.

Agents: one group `"agents"` of A = N * J per-slot agents, agent a = i * J + j deciding job slot
j of dispatcher i (a domain's N agents each make J decisions per step among K candidates).
Entries, with B the batch size (empty for one environment) and D the length of a dispatcher's
flattened observation (`dgpg.pettingzoo.flat_observation`):

- `("agents", "observation")` float32 (*B, A, D + J): the dispatcher's observation, then the
  one-hot of the slot;
- `("agents", "action")` int64 (*B, A), `Categorical(K)`: the candidate index (the action of an
  empty slot is ignored);
- `("agents", "reward")` float32 (*B, A, 1): the step's team reward, the same for every agent;
- `"state"` float32 (*B, S): the flattened global state (`flat_state`), for centralised critics;
- `("metrics", name)` float32 (*B,): the step's metrics (0 after a reset);
- `"done"`, `"terminated"`, `"truncated"` bool (*B, 1): truncated (and done) after
  `episode_steps` steps, never terminated.

The domain's `reset`, `step` and `observe` run inside two `jax.jit` functions (vmapped over the
batch), compiled once per environment. Arrays cross to torch through DLPack without copies
(`torch.from_dlpack`); actions cross back through DLPack after a cast to int32 in torch (JAX
without x64 has no int64, so DLPack would copy anyway). The JAX state stays in JAX.

Seeding: environment b of the batch has the root key `fold_in(key(seed), b)` (unbatched:
`key(seed)`, seed taken modulo 2**32). Its first episode is drawn from the root key, episode
e > 0 from `fold_in(fold_in(root, 2), e)`, and the step keys from the stream `fold_in(episode
key, 1)`, split once per step: an unbatched environment replays the PettingZoo adapter's
(`dgpg.pettingzoo`) trajectories for the same seed and actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from dgpg.domains import DEFAULT_DOMAIN, domain_of, get_domain
from dgpg.pettingzoo import flat_observation, flat_state

GROUP = "agents"
"""The name of the one agent group."""

SEED_LIMIT = 2**32


def _to_torch(x: jax.Array) -> torch.Tensor:
    """A JAX array as a torch tensor sharing its memory (DLPack)."""
    return torch.from_dlpack(x)


def _where(mask: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `mask` (B,) else `old`, leaf by leaf (PRNG keys included)."""

    def pick(n: jax.Array, o: jax.Array) -> jax.Array:
        if jax.dtypes.issubdtype(n.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(pick(jax.random.key_data(n), jax.random.key_data(o)))
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - mask.ndim)), n, o)

    return jax.tree.map(pick, new, old)


def _strong(tree: Any) -> Any:
    """`tree` without weak types, so that a jitted function's outputs fed back as its inputs
    do not trigger a second compilation."""
    return jax.tree.map(
        lambda x: x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
        else jnp.asarray(x, x.dtype), tree)


def _blank(struct: Any) -> Any:
    """Zeros (or zero keys) of the shapes and dtypes of `struct`, a tree of ShapeDtypeStruct."""
    key_data = jax.random.key_data(jax.random.key(0))

    def zeros(x: jax.ShapeDtypeStruct) -> jax.Array:
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jnp.zeros(x.shape + key_data.shape, key_data.dtype))
        return jnp.zeros(x.shape, x.dtype)

    return jax.tree.map(zeros, struct)


class DomainEnv(EnvBase):
    """A dgpg domain as a TorchRL `EnvBase` with per-slot agents (see the module docstring).

    `domain`: a domain name (`dgpg.domains.names()`, built with `config_kwargs`) or an
    environment configuration. `batch_size`: () for one environment, [B] for B environments
    stepped together. `seed`: the seed of `set_seed` (None: 0). `return_state`: include the
    global `"state"` entry. `device`: where the tensors live (None: JAX's default device; another
    device costs a copy each way).
    """

    def __init__(
        self,
        domain: str | Any = DEFAULT_DOMAIN,
        *,
        batch_size: Sequence[int] | torch.Size = (),
        seed: int | None = 0,
        return_state: bool = True,
        device: str | torch.device | None = None,
        **config_kwargs: Any,
    ):
        if isinstance(domain, str):
            config = get_domain(domain).config_type(**config_kwargs)
        elif config_kwargs:
            raise ValueError("config_kwargs apply to a domain name, not to a configuration")
        else:
            config = domain
        batch_size = torch.Size(batch_size)
        if len(batch_size) > 1:
            raise ValueError(f"batch_size must be () or [B], got {list(batch_size)}")
        jax_device = self._jax_device = jax.devices()[0]
        if device is None:
            device = "cpu" if jax_device.platform == "cpu" else f"cuda:{jax_device.id}"
        super().__init__(device=device, batch_size=batch_size)
        self.config = config
        self.domain = domain_of(config)
        self.return_state = return_state
        self._batched = len(batch_size) == 1
        self._n_envs = batch_size[0] if self._batched else 1

        c = config
        state = jax.eval_shape(lambda k: self.domain.reset(k, c), jax.random.key(0))
        obs = jax.eval_shape(lambda s: self.domain.observe(s, c), state)
        n, self.n_slots, self.n_candidates = (
            c.n_agents, obs.slots.shape[1], obs.candidates.shape[1])
        self.n_dispatchers = n
        self.n_group = n * self.n_slots
        flat = jax.eval_shape(lambda s: flat_observation(s, c), state)
        self.observation_size = flat.shape[1] + self.n_slots
        actions = jax.ShapeDtypeStruct((n, self.n_slots), jnp.int32)
        _, _, metrics = jax.eval_shape(
            lambda k, s, a: self.domain.step(k, s, a, c), jax.random.key(0), state, actions)
        self.metric_names = tuple(sorted(metrics))
        self._make_specs(jax.eval_shape(lambda s: flat_state(s, c), state).shape[0])
        self._compile()
        self._set_seed(seed)

    @property
    def group_map(self) -> dict[str, list[str]]:
        """`{"agents": ["dispatcher_{i}_slot_{j}", ...]}`, the A agents in order."""
        return {GROUP: [f"dispatcher_{i}_slot_{j}" for i in range(self.n_dispatchers)
                        for j in range(self.n_slots)]}

    def _make_specs(self, state_size: int) -> None:
        B, A = self.batch_size, self.n_group
        group = (*B, A)
        observation = {
            GROUP: Composite(
                observation=Unbounded((*group, self.observation_size), dtype=torch.float32),
                shape=group),
            "metrics": Composite({name: Unbounded(B, dtype=torch.float32)
                                  for name in self.metric_names}, shape=B),
        }
        if self.return_state:
            observation["state"] = Unbounded((*B, state_size), dtype=torch.float32)
        self.observation_spec = Composite(observation, shape=B)
        self.action_spec = Composite(
            {GROUP: Composite(action=Categorical(self.n_candidates, group, dtype=torch.int64),
                              shape=group)}, shape=B)
        self.reward_spec = Composite(
            {GROUP: Composite(reward=Unbounded((*group, 1), dtype=torch.float32),
                              shape=group)}, shape=B)
        self.done_spec = Composite(
            {name: Categorical(2, (*B, 1), dtype=torch.bool)
             for name in ("done", "terminated", "truncated")}, shape=B)

    def _compile(self) -> None:
        """Jit the batched reset and step (vmapped over the batch when batched)."""
        c, domain, J, A = self.config, self.domain, self.n_slots, self.n_group
        names = self.metric_names
        eye = jnp.eye(J, dtype=jnp.float32)

        def outputs(state: Any) -> tuple[jax.Array, jax.Array]:
            """Per-slot observations (A, D + J) and the global state (S,)."""
            flat = flat_observation(state, c)
            n, d = flat.shape
            per_slot = jnp.concatenate(
                [jnp.broadcast_to(flat[:, None, :], (n, J, d)),
                 jnp.broadcast_to(eye, (n, J, J))], axis=2).reshape(A, d + J)
            glob = flat_state(state, c) if self.return_state else jnp.zeros((0,), jnp.float32)
            return per_slot, glob

        def reset_one(root: jax.Array, episode: jax.Array) -> tuple[Any, jax.Array]:
            later = jax.random.fold_in(jax.random.fold_in(root, 2), episode)
            key = _where(episode == 0, root, later)
            return domain.reset(key, c), jax.random.fold_in(key, 1)

        def step_one(key: jax.Array, state: Any, actions: jax.Array):
            key, sub = jax.random.split(key)
            state, reward, metrics = domain.step(sub, state, actions.reshape(-1, J), c)
            metrics = jnp.stack([jnp.asarray(metrics[k], jnp.float32) for k in names])
            return key, state, jnp.broadcast_to(jnp.asarray(reward, jnp.float32), (A, 1)), \
                metrics

        vmap = jax.vmap if self._batched else (lambda f: f)
        steps = c.episode_steps

        def reset(roots, episodes, mask, keys, state, t):
            """Reset the environments where `mask` (*B,)."""
            new_state, new_keys = vmap(reset_one)(roots, episodes)
            state, keys = _strong(_where(mask, new_state, state)), _where(mask, new_keys, keys)
            t = jnp.where(mask, 0, t).astype(jnp.int32)
            episodes = (episodes + mask).astype(jnp.int32)
            obs, glob = vmap(outputs)(state)
            return episodes, keys, state, t, obs, glob, (t >= steps)[..., None]

        def step(keys, state, t, actions):
            keys, state, reward, metrics = vmap(step_one)(keys, state, actions)
            t = (t + 1).astype(jnp.int32)
            obs, glob = vmap(outputs)(state)
            return keys, _strong(state), t, obs, glob, reward, metrics, (t >= steps)[..., None]

        # one compilation each: the first reset starts from a blank state
        self._jit_reset = jax.jit(reset)
        self._jit_step = jax.jit(step)
        self._blank = jax.eval_shape(
            lambda r, e: vmap(reset_one)(r, e), self._seed_roots(0),
            jnp.zeros(self.batch_size, jnp.int32))

    def _set_seed(self, seed: int | None) -> None:
        """Reseed: the next reset starts every environment's first episode again."""
        self._roots = self._put(self._seed_roots(0 if seed is None else int(seed) % SEED_LIMIT))
        self._episodes = self._put(jnp.zeros(self.batch_size, jnp.int32))
        self._state: Any = None  # the JAX state, step-key streams and step counts (*B,)
        self._keys: jax.Array | None = None
        self._t: jax.Array | None = None

    def _put(self, tree: Any) -> Any:
        """`tree` committed to the JAX device: every input of the jitted functions is, so that
        they compile once (committed and uncommitted inputs compile apart)."""
        return jax.device_put(tree, self._jax_device)

    def _seed_roots(self, seed: int) -> jax.Array:
        """The environments' root keys (*B,)."""
        root = jax.random.key(seed)
        if self._batched:
            root = jax.vmap(lambda b: jax.random.fold_in(root, b))(jnp.arange(self._n_envs))
        return root

    def _from_jax(self, x: jax.Array) -> torch.Tensor:
        t = _to_torch(x)
        return t if t.device == self.device else t.to(self.device)

    def _observation_td(self, obs: jax.Array, glob: jax.Array, metrics: jax.Array | None,
                        done: jax.Array) -> dict[str, Any]:
        """The entries of a reset or step: observations (*B, A, D + J), global state (*B, S),
        metrics (*B, M) or None (zeros), done (*B, 1)."""
        B = self.batch_size
        done_t = self._from_jax(done)
        out: dict[str, Any] = {
            GROUP: TensorDict({"observation": self._from_jax(obs)}, batch_size=(*B, self.n_group)),
            "done": done_t,
            "terminated": torch.zeros_like(done_t),
            "truncated": done_t.clone(),
        }
        if metrics is None:
            out["metrics"] = TensorDict(
                {name: torch.zeros(B, device=self.device) for name in self.metric_names},
                batch_size=B)
        else:
            values = self._from_jax(metrics).unbind(-1)  # (*B, M): views of one array
            out["metrics"] = TensorDict(dict(zip(self.metric_names, values, strict=True)),
                                        batch_size=B)
        if self.return_state:
            out["state"] = self._from_jax(glob)
        return out

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        """Reset all environments, or those where `tensordict["_reset"]` (*B, 1) is True."""
        mask = None
        if self._state is not None and tensordict is not None and "_reset" in tensordict.keys():
            mask = jax.dlpack.from_dlpack(
                tensordict.get("_reset").reshape(self.batch_size).to(torch.int32).cpu())
        if mask is None:
            mask = jnp.ones(self.batch_size, bool)
        else:
            mask = mask.astype(bool)
        mask = self._put(mask)
        if self._state is None:
            self._state, self._keys = self._put(_blank(self._blank))
            self._t = self._put(jnp.zeros(self.batch_size, jnp.int32))
        (self._episodes, self._keys, self._state, self._t, obs, glob, done) = self._jit_reset(
            self._roots, self._episodes, mask, self._keys, self._state, self._t)
        return TensorDict(self._observation_td(obs, glob, None, done),
                          batch_size=self.batch_size, device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._state is None:
            raise RuntimeError("step() called before reset()")
        actions = tensordict.get((GROUP, "action")).to(torch.int32)
        if actions.device.type != "cpu" and self.device.type == "cpu":
            actions = actions.cpu()
        actions = self._put(jax.dlpack.from_dlpack(actions.contiguous()))
        (self._keys, self._state, self._t, obs, glob, reward, metrics, done) = self._jit_step(
            self._keys, self._state, self._t, actions)
        out = self._observation_td(obs, glob, metrics, done)
        out[GROUP]["reward"] = self._from_jax(reward)
        return TensorDict(out, batch_size=self.batch_size, device=self.device)
