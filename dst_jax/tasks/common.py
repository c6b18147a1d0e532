"""Helpers every task uses: seeded subsets, evaluation in padded slices, perplexity.

One implementation of each, so that the three tasks agree on what a subset is, how a split is
cut into evaluation slices, and what perplexity means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def subset(x: Any, y: Any, k: int | None, seed: int | None, what: str = "split") -> tuple[Any, Any]:
    """k examples of (x, y): the first k (`seed=None`), or k chosen by a seeded permutation and
    kept in their original order. `k=None` keeps the split whole.

    Raises:
      ValueError: if k exceeds the split's size (a silent clamp would hide a typo).
    """
    n = int(np.shape(y)[0])
    if k is None:
        return x, y
    if not 1 <= k <= n:
        raise ValueError(f"a subset of {k} examples of the {what} needs 1 <= k <= {n}")
    if seed is None:
        return x[:k], y[:k]
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:k])
    return x[idx], y[idx]


def pad_to_slices(x_NxD: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Rows cut into (S, size, ...) slices, the last zero-padded; and the (S, size) row mask."""
    n = x_NxD.shape[0]
    n_slices = -(-n // size)
    pad = n_slices * size - n
    x_SxE = jnp.pad(x_NxD, ((0, pad),) + ((0, 0),) * (x_NxD.ndim - 1))
    w_SxE = (jnp.arange(n_slices * size) < n).astype(jnp.float32).reshape(n_slices, size)
    return x_SxE.reshape(n_slices, size, *x_NxD.shape[1:]), w_SxE


def sliced_sums(
    fn: Callable[[jax.Array, jax.Array, jax.Array, jax.Array], PyTree],
    key: jax.Array,
    x_NxD: jax.Array,
    y_N: jax.Array,
    size: int,
) -> PyTree:
    """Sum over the whole split of `fn(key_s, x_ExD, y_E, w_E)`, evaluated slice by slice.

    `fn` returns sums over its slice weighted by the row mask `w_E` (1 for real rows, 0 for
    padding), as a pytree of arrays. A `lax.scan` keeps one slice of activations alive at a time
    (times the width of a vmapped grid), so evaluation memory does not grow with the split.
    Slice s gets the key `split(key, S)[s]`.
    """
    n = x_NxD.shape[0]
    size = min(size, n)
    x_SxExD, w_SxE = pad_to_slices(x_NxD, size)
    y_SxE, _ = pad_to_slices(y_N, size)
    keys = jax.random.split(key, x_SxExD.shape[0])

    def step(total, inputs):
        x, y, w, k = inputs
        return jax.tree.map(jnp.add, total, fn(k, x, y, w)), None

    zeros = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype),
        jax.eval_shape(fn, keys[0], x_SxExD[0], y_SxE[0], w_SxE[0]),
    )
    total, _ = jax.lax.scan(step, zeros, (x_SxExD, y_SxE, w_SxE, keys))
    return total


def perplexity(counts: jax.Array) -> jax.Array:
    """exp(entropy) of the distribution `counts / sum(counts)` over the last axis.

    `counts` are non-negative counts or frequencies; 0 log 0 = 0. The result lies in [1, K]:
    K when every entry is equal, 1 when one entry holds everything. All-zero counts give NaN.
    The inner `where` keeps `log`'s argument positive, so the gradient stays finite too.
    """
    counts = jnp.asarray(counts)
    if not jnp.issubdtype(counts.dtype, jnp.floating):
        counts = counts.astype(jnp.float32)
    p = counts / jnp.sum(counts, axis=-1, keepdims=True)
    plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    return jnp.exp(-jnp.sum(plogp, axis=-1))
