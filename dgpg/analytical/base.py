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
    def reference(self, state: Any) -> Any:
        """The model's reference for this state (a pytree; `probs` holds the reference policy)."""
        ...

    def guidance_loss(self, probs: jax.Array, reference: Any) -> jax.Array:
        """Scalar loss whose gradient in `probs` is the guidance direction; its gradient vanishes
        (on the probability simplex) at the reference policy."""
        ...
