"""The relaxations: `softmax(l)` and `sigma(a)`, no sample and no temperature.

Why a module of its own: they are not discrete estimators but references for tasks that train
relaxed networks (difflogic's DLGN); the registry lists them with `discrete=False`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from dst_jax.estimators.checks import _as_logits, _compute_dtype, _finite_rows

Array = jax.Array


def softmax_relaxation(key: ArrayLike, logits: ArrayLike) -> Array:
    """difflogic's relaxation: `softmax(l)`, no sample, no temperature (`key` unused).

    Not a discrete estimator: a reference for tasks that train relaxed networks.

    Example:
        >>> import jax.numpy as jnp
        >>> from dst_jax.estimators import softmax_relaxation
        >>> softmax_relaxation(None, jnp.zeros(4)).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    del key
    logits = _as_logits(logits, categorical=True)
    l, invalid = _finite_rows(logits.astype(_compute_dtype(logits.dtype)))
    return jnp.where(invalid, jnp.nan, jax.nn.softmax(l, axis=-1)).astype(logits.dtype)


def sigmoid_relaxation(key: ArrayLike, logits: ArrayLike) -> Array:
    """`sigma(a)`: the relaxation's Bernoulli form (no sample; `key` unused).

    Example:
        >>> import jax.numpy as jnp
        >>> from dst_jax.estimators import sigmoid_relaxation
        >>> sigmoid_relaxation(None, jnp.zeros(2)).tolist()
        [0.5, 0.5]
    """
    del key
    a = _as_logits(logits, categorical=False)
    return jax.nn.sigmoid(a.astype(_compute_dtype(a.dtype))).astype(a.dtype)
