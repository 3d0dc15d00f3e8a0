"""Checkpoints: msgpack payload behind a JSON header with a format version and a SHA-256.

Layout of a file:

    DGPG-CHECKPOINT\\n
    {"format_version": 2, "sha256": "...", "meta": {...}}\\n
    <msgpack payload>

The SHA-256 covers the metadata (as canonical JSON) and the payload, so an edit of either is
detected; format 1 files (whose checksum covers the payload only) are still read. Loading never
executes code (no pickle): the header is JSON and the payload is msgpack of plain arrays,
restored into a template pytree. A missing, truncated or edited file, or one of another format,
raises `CheckpointError` with a clear message. Writes are atomic (dgpg.atomic).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from dgpg import atomic

MAGIC = b"DGPG-CHECKPOINT\n"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or of another format."""


def _to_plain(tree: Any) -> Any:
    """PRNG key arrays become their uint32 key data so msgpack can store them."""
    return jax.tree.map(
        lambda x: np.asarray(jax.random.key_data(x))
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)
        else np.asarray(x),
        tree,
    )


def _digest(version: int, meta: Any, payload: bytes) -> str:
    h = hashlib.sha256()
    if version >= 2:
        h.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    h.update(payload)
    return h.hexdigest()


def save(path: str | os.PathLike, tree: Any, meta: dict[str, Any]) -> None:
    """Atomically write `tree` (a pytree of arrays) with JSON-serialisable `meta`."""
    payload = serialization.msgpack_serialize(
        serialization.to_state_dict(_to_plain(tree))
    )
    header = {"format_version": FORMAT_VERSION,
              "sha256": _digest(FORMAT_VERSION, meta, payload), "meta": meta}
    atomic.write_bytes(path, MAGIC + json.dumps(header).encode() + b"\n" + payload)


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and verify a checkpoint; returns (meta, raw state dict)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    except ValueError as e:  # an embedded NUL character in the path
        raise CheckpointError(f"cannot read checkpoint {path!r}: {e}") from None
    if not data.startswith(MAGIC):
        raise CheckpointError(f"not a dgpg checkpoint: {path}")
    try:
        header_line, payload = data[len(MAGIC):].split(b"\n", 1)
        header = json.loads(header_line)
        version, digest, meta = header["format_version"], header["sha256"], header["meta"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"corrupt checkpoint header: {path}") from None
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has format version {str(version)[:20]}; this dgpg reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if not isinstance(meta, dict) or _digest(version, meta, payload) != digest:
        raise CheckpointError(f"checkpoint {path} is corrupt (checksum mismatch)")
    try:
        state = serialization.msgpack_restore(payload)
    except Exception:  # msgpack raises several types on garbage
        raise CheckpointError(f"corrupt checkpoint payload: {path}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"corrupt checkpoint payload: {path}")
    return meta, state


def restore(template: Any, state: dict[str, Any], path: str | os.PathLike = "") -> Any:
    """Fill `template` (a pytree like the saved one) from a state dict read by `read`."""
    plain = _to_plain(template)
    try:
        restored = serialization.from_state_dict(plain, state)
        pairs = list(zip(jax.tree.leaves(plain), jax.tree.leaves(restored), strict=True))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} does not match this model: {e}") from None
    for a, b in pairs:
        if not isinstance(b, np.ndarray | np.generic) or np.shape(a) != np.shape(b):
            raise CheckpointError(f"checkpoint {path} does not match this model (shapes)")
        if np.asarray(b).dtype != np.asarray(a).dtype:
            raise CheckpointError(f"checkpoint {path} does not match this model (dtypes)")

    def back(t, r):
        if jax.dtypes.issubdtype(getattr(t, "dtype", None), jax.dtypes.prng_key):
            return jax.random.wrap_key_data(np.asarray(r, np.uint32))
        return jax.numpy.asarray(r, dtype=t.dtype)

    return jax.tree.map(back, template, restored)
