"""The categorical estimators: logits `(..., K)` -> a one-hot sample `(..., K)`.

Why a module of its own: these are the estimators a user calls. Each is written once, as "draw
the forward sample, then the backward at that sample": the backward at a sample (`_*_at`) is
shared by the direct function and, for the estimators whose backward needs only the one-hot `D`
(not the noise that drew it), by the given-sample form the registry composes with any sampler
(`_given`). Formulas: the package docstring's table.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from dst_jax.estimators.checks import (
    _compute_dtype,
    _finite_rows,
    _prepared,
    _require_tau_b,
)
from dst_jax.estimators.cores import _identity_st, _rao_st, _reinmax_st, _softmax_st
from dst_jax.estimators.noise import _rao_key, _sample, conditional_gumbel

Array = jax.Array

# ----------------------------------------------------------------------------------------------
# Given-sample forms: the backward at a sample drawn elsewhere.


def _cast_sample(d: ArrayLike, logits: Array) -> Array:
    return lax.stop_gradient(jnp.asarray(d).astype(logits.dtype))


def _given(
    backward: Callable[..., Array], reads: tuple[tuple[str, str], ...]
) -> Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Array]:
    """The given-sample form `(d, logits, tau_f, tau_b) -> z` of an estimator whose backward at
    a one-hot `d` is `backward(d, l, logits, *taus)`.

    `reads` pairs each of the estimator's temperature arguments with the uniform-form field it
    comes from, e.g. `(("tau", "tau_b"),)` for ReinMax. The value is `d` (cast to the logits'
    dtype, no gradient), the VJP the estimator's backward at `d`; with `d` the estimator's own
    Gumbel-max sample it equals the estimator, value and gradient, bit for bit.
    """

    def straight_through(d, logits, tau_f, tau_b):
        fields = {"tau_f": tau_f, "tau_b": tau_b}
        logits, taus = _prepared(logits, **{name: fields[field] for name, field in reads})
        l, _ = _finite_rows(logits.astype(_compute_dtype(logits.dtype)))
        return backward(_cast_sample(d, logits), l, logits, *taus)

    straight_through.__name__ = straight_through.__qualname__ = f"{backward.__name__}_given"
    return straight_through


# ----------------------------------------------------------------------------------------------
# Backwards at a sample `d`: `l` the finite-row logits in the compute dtype, `logits` as given.


def _decoupled_st_at(d, l, logits, tau_f, tau_b):
    return _softmax_st(d, l / tau_b)


def _softmax_ste_at(d, l, logits, tau):
    return _decoupled_st_at(d, l, logits, tau, tau)


def _identity_ste_at(d, l, logits, tau):
    return _identity_st(d, logits)


def _decoupled_reinmax_at(d, l, logits, tau_f, tau_b):
    p_b = lax.stop_gradient(jax.nn.softmax(l / tau_b, axis=-1))
    return _reinmax_st(d, l / tau_f, p_b)


def _reinmax_at(d, l, logits, tau):
    return _decoupled_reinmax_at(d, l, logits, jnp.ones_like(tau), tau)


# ----------------------------------------------------------------------------------------------
# The estimators.


def decoupled_st(
    key: ArrayLike,
    logits: ArrayLike,
    tau_f: ArrayLike,
    tau_b: ArrayLike | None = None,
    backward_noise: bool = False,
) -> Array:
    """Decoupled straight-through estimator for a categorical over the last axis.

    Forward: `D = one_hot(argmax(l/tau_f + g))`, an exact sample of `Cat(softmax(l/tau_f))`.
    Backward: `J(softmax(l/tau_b)) v / tau_b`; with `backward_noise=True`,
    `J(softmax(l/tau_b + g)) v / tau_b` with the forward's `g`.

    Args:
      key: PRNG key (typed or raw).
      logits: `(..., K)` float array.
      tau_f, tau_b: forward and backward temperatures (scalars or broadcastable). Both are
        required: `tau_b` has no default (a missing one raises a TypeError that says so; for
        one temperature in both passes use `softmax_ste`).
      backward_noise: static; whether the backward surrogate sees the forward's Gumbel noise.

    Returns:
      `(..., K)` one-hot sample, dtype of `logits`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import decoupled_st
        >>> key, logits = jax.random.key(0), jnp.array([[2.0, 0.5, -1.0, 0.0]])
        >>> decoupled_st(key, logits, 0.1, 2.0).tolist()  # tau_f = 0.1: almost surely the argmax
        [[1.0, 0.0, 0.0, 0.0]]

        The gradient is the Jacobian of `softmax(l / tau_b)`, whatever the forward sampled:

        >>> w = jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> grad = jax.grad(lambda l: (decoupled_st(key, l, 0.1, 2.0) * w).sum())(logits)
        >>> p = jax.nn.softmax(logits / 2.0)
        >>> bool(jnp.allclose(grad, p * (w - (p * w).sum()) / 2.0))
        True
    """
    tau_b = _require_tau_b("decoupled_st", tau_b, single="softmax_ste")
    logits, (tau_f, tau_b) = _prepared(logits, tau_f=tau_f, tau_b=tau_b)
    d, l, g, _ = _sample(key, logits, tau_f)
    if backward_noise:
        return _softmax_st(d, l / tau_b + g)
    return _decoupled_st_at(d, l, logits, tau_f, tau_b)


def softmax_ste(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Softmax straight-through: `decoupled_st(key, l, tau, tau)`, value and gradient.

    Forward `one_hot(argmax(l/tau + g))`; backward `J(softmax(l/tau)) v / tau`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import decoupled_st, softmax_ste
        >>> key, logits = jax.random.key(0), jnp.array([0.3, -0.2, 1.0])
        >>> bool((softmax_ste(key, logits, 0.5) == decoupled_st(key, logits, 0.5, 0.5)).all())
        True
    """
    logits, (tau,) = _prepared(logits, tau=tau)
    d, l, _, _ = _sample(key, logits, tau)
    return _softmax_ste_at(d, l, logits, tau)


def st_gumbel_softmax(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Hard (straight-through) Gumbel-softmax, as PyTorch's `gumbel_softmax(hard=True)`.

    Forward `D = one_hot(argmax(l + g))`, a sample of `Cat(softmax(l))` whatever `tau`;
    backward `J(softmax((l + g)/tau)) v / tau`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import st_gumbel_softmax
        >>> key, logits = jax.random.key(0), jnp.zeros((5, 3))
        >>> z = st_gumbel_softmax(key, logits, 0.5)
        >>> z.sum(axis=-1).tolist()  # one one-hot row per example
        [1.0, 1.0, 1.0, 1.0, 1.0]
        >>> bool((z == st_gumbel_softmax(key, logits, 10.0)).all())  # tau acts in the backward only
        True
    """
    logits, (tau,) = _prepared(logits, tau=tau)
    d, l, g, _ = _sample(key, logits, None)
    return _softmax_st(d, (l + g) / tau)


def identity_ste(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Identity straight-through: forward `one_hot(argmax(l/tau + g))`, backward `v`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import identity_ste
        >>> key, logits = jax.random.key(0), jnp.array([0.3, -0.2, 1.0])
        >>> w = jnp.array([1.0, 2.0, 3.0])
        >>> jax.grad(lambda l: (identity_ste(key, l, 1.0) * w).sum())(logits).tolist()
        [1.0, 2.0, 3.0]
    """
    logits, (tau,) = _prepared(logits, tau=tau)
    d, l, _, _ = _sample(key, logits, tau)
    return _identity_ste_at(d, l, logits, tau)


def decoupled_reinmax(
    key: ArrayLike, logits: ArrayLike, tau_f: ArrayLike, tau_b: ArrayLike | None = None
) -> Array:
    """ReinMax with its own forward temperature: `reinmax` applied to `l/tau_f` with temperature
    `tau_b/tau_f`.

    Forward: `D = one_hot(argmax(l/tau_f + g))`, a sample of `Cat(pi0)`, `pi0 = softmax(l/tau_f)`.
    Backward: `(2 J(pi1) v - J(pi0) v / 2) / tau_f` with `pi1 = (softmax(l/tau_b) + D) / 2`.
    `decoupled_reinmax(key, l, 1, tau) == reinmax(key, l, tau)` exactly. Both temperatures are
    required (a missing `tau_b` raises a TypeError that says so).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import decoupled_reinmax
        >>> key, logits = jax.random.key(0), jnp.array([[2.0, 0.5, -1.0, 0.0]])
        >>> z = decoupled_reinmax(key, logits, 0.3, 2.0)
        >>> z.shape, z.sum().item()
        ((1, 4), 1.0)
    """
    tau_b = _require_tau_b("decoupled_reinmax", tau_b, single="reinmax")
    logits, (tau_f, tau_b) = _prepared(logits, tau_f=tau_f, tau_b=tau_b)
    d, l, _, _ = _sample(key, logits, tau_f)
    return _decoupled_reinmax_at(d, l, logits, tau_f, tau_b)


def reinmax(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """ReinMax (Liu et al. 2023, "Bridging Discrete and Backpropagation").

    Forward: `D = one_hot(argmax(l + g))`, a sample of `Cat(pi0)`, `pi0 = softmax(l)`; `tau`
    does not change the forward. Backward: `2 J(pi1) v - J(pi0) v / 2`,
    `pi1 = (softmax(l/tau) + D) / 2`: a second-order (Heun) correction of the straight-through
    gradient.

    Temperatures below 1. The authors' implementation refuses `tau < 1`; dst_jax accepts any
    `tau` in `[TAU_MIN, TAU_MAX]`. The reason is the decoupled form: `decoupled_reinmax(key, l,
    tau_f, tau_b)` is ReinMax applied to `l/tau_f` at temperature `tau_b/tau_f`, so a sweep over
    `(tau_f, tau_b)` reaches ratios below 1 (every cell with `tau_b < tau_f`), and
    `reinmax(key, l, tau) == decoupled_reinmax(key, l, 1, tau)` must hold on the whole axis for
    the two to be compared on the same grid. Values below 1 lie outside the range the authors
    recommend; the sweeps report them as measured, not as ReinMax's intended use.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import decoupled_reinmax, reinmax
        >>> key, logits = jax.random.key(0), jnp.array([0.3, -0.2, 1.0])
        >>> w = jnp.array([1.0, 2.0, 3.0])
        >>> g = jax.grad(lambda l: (reinmax(key, l, 2.0) * w).sum())(logits)
        >>> g_d = jax.grad(lambda l: (decoupled_reinmax(key, l, 1.0, 2.0) * w).sum())(logits)
        >>> bool((g == g_d).all())
        True
    """
    logits, (tau,) = _prepared(logits, tau=tau)
    d, l, _, _ = _sample(key, logits, jnp.ones_like(tau))
    return _reinmax_at(d, l, logits, tau)


def gumbel_rao(key: ArrayLike, logits: ArrayLike, tau: ArrayLike, k: int = 10) -> Array:
    """Gumbel-Rao (Paulus et al. 2021, GR-MCK): ST Gumbel-softmax with a Rao-Blackwellised
    backward.

    Forward: the same `D = one_hot(argmax(l + g))` as `st_gumbel_softmax(key, l, tau)`.
    Backward: `(1/k) sum_i J(softmax((l + h_i)/tau)) v / tau`, `h_1..h_k` Gumbel draws
    conditioned on `argmax(l + h_i) = argmax(D)` (`conditional_gumbel`, from a key derived from
    `key`). `k` is static.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import gumbel_rao, st_gumbel_softmax
        >>> key, logits = jax.random.key(0), jnp.array([[2.0, 0.5, -1.0, 0.0]])
        >>> z = gumbel_rao(key, logits, 0.5, k=20)
        >>> bool((z == st_gumbel_softmax(key, logits, 0.5)).all())  # the same sample
        True
    """
    # numpy integers are integers; a bool is not a count of draws.
    if not (isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 1):
        raise ValueError(f"gumbel_rao needs a static integer k >= 1 (conditional draws), got {k!r}")
    k = int(k)
    logits, (tau,) = _prepared(logits, tau=tau)
    d, l, _, invalid = _sample(key, logits, None)
    index = jnp.argmax(jnp.where(invalid, 0, d), axis=-1)
    l_fixed = lax.stop_gradient(l)
    z_k = lax.stop_gradient(conditional_gumbel(_rao_key(key), l_fixed, index, k))
    # s_i = (l + h_i)/tau with h_i = z_i - l held fixed: autodiff through it gives the 1/tau.
    # A masked class (l = z = -inf) gets h = 0, not the NaN of -inf - -inf.
    h_k = jnp.where(l_fixed == -jnp.inf, 0.0, z_k - l_fixed)
    return _rao_st(d, (l + h_k) / tau)


# The given-sample forms (registry data, `GivenSample.straight_through`).
decoupled_st_given = _given(_decoupled_st_at, (("tau_f", "tau_f"), ("tau_b", "tau_b")))
softmax_ste_given = _given(_softmax_ste_at, (("tau", "tau_f"),))
identity_ste_given = _given(_identity_ste_at, (("tau", "tau_f"),))
decoupled_reinmax_given = _given(_decoupled_reinmax_at, (("tau_f", "tau_f"), ("tau_b", "tau_b")))
reinmax_given = _given(_reinmax_at, (("tau", "tau_b"),))
