"""The Bernoulli estimators: logits of any shape -> {0, 1} samples of that shape.

Why a module of its own: the paper's four are written out with the sigmoid surrogate (cheaper
than a two-class softmax, and equal to it); every other estimator's Bernoulli form is its
categorical form on the two logits `(0, a)`, second component (`_on_zero_and_a`), so that its
sample equals the categorical one's class-1 entry bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dst_jax.estimators.categorical import decoupled_reinmax, gumbel_rao, reinmax
from dst_jax.estimators.checks import _as_logits, _as_temperature, _require_tau_b
from dst_jax.estimators.cores import _identity_st, _sigmoid_st
from dst_jax.estimators.noise import _bernoulli_sample

Array = jax.Array


def decoupled_st_bernoulli(
    key: ArrayLike,
    logits: ArrayLike,
    tau_f: ArrayLike,
    tau_b: ArrayLike | None = None,
    backward_noise: bool = False,
) -> Array:
    """Decoupled straight-through estimator for Bernoulli units (elementwise).

    Forward: `1[a/tau_f + L > 0]`, an exact sample of `Bernoulli(sigma(a/tau_f))`.
    Backward: `sigma'(a/tau_b) v / tau_b`; with `backward_noise=True`, `sigma'(a/tau_b + L) v /
    tau_b` with the forward's `L`. Both temperatures are required (a missing `tau_b` raises a
    TypeError that says so; for one temperature use `sigmoid_ste`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import decoupled_st_bernoulli
        >>> key = jax.random.key(0)
        >>> decoupled_st_bernoulli(key, jnp.array([-30.0, 30.0]), 1.0, 1.0).tolist()
        [0.0, 1.0]
        >>> # the surrogate slope sigma'(a / tau_b) / tau_b at a = 0, tau_b = 0.5: 0.25 / 0.5
        >>> jax.grad(lambda a: decoupled_st_bernoulli(key, a, 1.0, 0.5))(0.0).item()
        0.5
    """
    a = _as_logits(logits, categorical=False)
    tau_b = _require_tau_b("decoupled_st_bernoulli", tau_b, single="sigmoid_ste")
    tau_f, tau_b = _as_temperature(tau_f, "tau_f", a), _as_temperature(tau_b, "tau_b", a)
    z, a_c, noise = _bernoulli_sample(key, a, tau_f)
    return _sigmoid_st(z, a_c / tau_b + noise if backward_noise else a_c / tau_b)


def sigmoid_ste(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Sigmoid straight-through: `decoupled_st_bernoulli(key, a, tau, tau)`.

    Forward `1[a/tau + L > 0]`; backward `sigma'(a/tau) v / tau`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import decoupled_st_bernoulli, sigmoid_ste
        >>> key, a = jax.random.key(0), jnp.array([0.3, -1.2, 2.0])
        >>> bool((sigmoid_ste(key, a, 0.7) == decoupled_st_bernoulli(key, a, 0.7, 0.7)).all())
        True
    """
    a = _as_logits(logits, categorical=False)
    tau = _as_temperature(tau, "tau", a)
    z, a_c, _ = _bernoulli_sample(key, a, tau)
    return _sigmoid_st(z, a_c / tau)


def st_gumbel_sigmoid(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Hard binary concrete: forward `1[a + L > 0]` (whatever `tau`), backward
    `sigma'((a + L)/tau) v / tau`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import st_gumbel_sigmoid
        >>> st_gumbel_sigmoid(jax.random.key(0), jnp.array([-30.0, 30.0]), 0.5).tolist()
        [0.0, 1.0]
    """
    a = _as_logits(logits, categorical=False)
    tau = _as_temperature(tau, "tau", a)
    z, a_c, noise = _bernoulli_sample(key, a, None)
    return _sigmoid_st(z, (a_c + noise) / tau)


def identity_ste_bernoulli(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Identity straight-through for Bernoulli units: forward `1[a/tau + L > 0]`, backward `v`.

    Example:
        >>> import jax
        >>> from dst_jax.estimators import identity_ste_bernoulli
        >>> jax.grad(lambda a: identity_ste_bernoulli(jax.random.key(0), a, 1.0))(0.3).item()
        1.0
    """
    a = _as_logits(logits, categorical=False)
    tau = _as_temperature(tau, "tau", a)
    z, _, _ = _bernoulli_sample(key, a, tau)
    return _identity_st(z, a)


def _on_zero_and_a(
    categorical: Callable[..., Array], key: ArrayLike, logits: ArrayLike, **kwargs
) -> Array:
    """`categorical(key, [0, a], **kwargs)[..., 1]`: the Bernoulli form of a categorical
    estimator. Temperature arrays that broadcast to `a`'s shape get a trailing class axis."""
    a = _as_logits(logits, categorical=False)
    for name in ("tau", "tau_f", "tau_b"):
        if name in kwargs and np.ndim(kwargs[name]):
            kwargs[name] = _as_temperature(kwargs[name], name, a)[..., None]
    l = jnp.stack([jnp.zeros_like(a), a], axis=-1)
    return categorical(key, l, **kwargs)[..., 1]


def reinmax_bernoulli(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """`reinmax` on the logits (0, a), second component: a sample of `Bernoulli(sigma(a))`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import reinmax, reinmax_bernoulli
        >>> key, a = jax.random.key(0), jnp.array([0.3, -1.2])
        >>> pair = jnp.stack([jnp.zeros_like(a), a], axis=-1)  # the logits (0, a)
        >>> bool((reinmax_bernoulli(key, a, 2.0) == reinmax(key, pair, 2.0)[..., 1]).all())
        True
    """
    return _on_zero_and_a(reinmax, key, logits, tau=tau)


def decoupled_reinmax_bernoulli(
    key: ArrayLike, logits: ArrayLike, tau_f: ArrayLike, tau_b: ArrayLike | None = None
) -> Array:
    """`decoupled_reinmax` on the logits (0, a), second component: a sample of
    `Bernoulli(sigma(a/tau_f))`. Both temperatures are required."""
    _require_tau_b("decoupled_reinmax_bernoulli", tau_b, single="reinmax_bernoulli")
    return _on_zero_and_a(decoupled_reinmax, key, logits, tau_f=tau_f, tau_b=tau_b)


def gumbel_rao_bernoulli(key: ArrayLike, logits: ArrayLike, tau: ArrayLike, k: int = 10) -> Array:
    """`gumbel_rao` on the logits (0, a), second component: a sample of `Bernoulli(sigma(a))`
    whose backward averages k conditional Logistic draws."""
    return _on_zero_and_a(gumbel_rao, key, logits, tau=tau, k=k)
