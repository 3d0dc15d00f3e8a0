"""The interface an analytical model implements to guide DG-PG.

A model turns the environment state into a *reference* (the efficient per-agent action
distribution the model prescribes, plus whatever the loss needs) and scores a policy's action
probabilities against it with a differentiable `guidance_loss`. The loss is computed from
probabilities in closed form, with no sampled actions or returns, so its gradient is noise-free.
Another domain (traffic assignment with BPR latencies, economic dispatch) plugs in by
implementing these two methods.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax


class AnalyticalModel(Protocol):
    def reference(self, state: Any, probs: jax.Array | None = None) -> Any:
        """The model's reference for this state (a pytree). `probs` (N, J, K) is the current
        policy, for models that hold the other agents at their expected placements; others
        ignore it."""
        ...

    def guidance_loss(self, probs: jax.Array, reference: Any) -> jax.Array:
        """Scalar loss whose gradient in `probs` is the guidance direction, computed from
        probabilities and the reference alone (no sampled actions, no returns)."""
        ...
