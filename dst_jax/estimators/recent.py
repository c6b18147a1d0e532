"""The estimators of the newest straight-through studies, and an unbiased score-function baseline.

Why a module of its own: these follow published code (sources below) rather than the paper
this project studies; they share the package's conventions (shapes, dtypes, noise, checks,
non-finite logits) and its one registry. Notation: `p = softmax(l)`, `D` the forward one-hot
(a sample of `Cat(p)`: every estimator here samples at temperature 1), `x` its index,
`J(pi) = diag(pi) - pi pi^T`, `v` the cotangent. ::

    estimator                  backward (the VJP of v)
    zgr(l)                     (J(p) v + ((D - p) . v) (D - p)) / 2
    mve(l, tau)                S^T v, S the K x K matrix of the published MVE with weight
                               tau (its `temp`; tau -> 0 is the ST Jacobian J(p))
    gapped_st(l, tau, gap=1)   J(softmax((l + m)/tau)) v / tau, m a constant: m_x = l_a - l_x,
                               m_j = -max(0, l_j - l_a + gap) (j != x), a = argmax(l)
    reinmax_cv(l, tau, eta=1.5, k=32)
                               2 J(pi_D) v - J(p) v / 2 + eta (GR_k - GS) at theta_D,
                               pi_D = (p + D)/2, theta_D = log(pi_D),
                               GS = J(softmax((theta_D + g')/tau)) v / tau (fresh g'),
                               GR_k = (1/k) sum_i J(softmax((theta_D + h_i)/tau)) v / tau,
                               h_i Gumbel conditioned on argmax(theta_D + h_i) = x
    rloo(l)                    none: a sample with zero pathwise gradient; the score-function
                               gradient comes from the task's loss (`rloo_surrogate`)

Sources. ZGR (Shekhovtsov, "Cold analysis of Rao-Blackwellized straight-through Gumbel-softmax
gradient estimator", ICML 2023) and MVE (Hooper and Shekhovtsov, "Generalized and optimal
straight-through estimators", AISTATS 2026): the published `Gradient_estimators.py` of
James-Hooper123/Generalized-and-Optimal-Straight-Through-Estimators (`ZGR`, `MVE`). Gapped ST
(Fan et al., "Training discrete deep generative models via gapped straight-through estimator",
ICML 2022): `gst_mover` of the authors' code (chijames/GST), as ReinMax's benchmarks run it
(fixed gap 1; `detach=True`, so `m` carries no gradient). ReinMax-CV (Wang and Bui, "Beyond
ReinMax", 2026): the `_CategoricalReinMaxCVST` backward of
Algomancer/Better-Straight-Through-Estimators (the ReinMax part at tau = 1, the control variate
at tau; the final sum-zero projection there is dropped, every term already sums to zero).

Temperatures. Every estimator here samples its forward at temperature 1; a `tau` acts in the
backward only, so the registry records it as `tau_b` (with `tau_f = 1`), as for ReinMax. None
has a temperature that sets both passes, so none has a coupling for a decoupled form to undo.
MVE's `tau` is not a softmax temperature but the published weight `temp` (0 gives the ST
Jacobian; that code raises it from 1 to 1e6 over training), in the same `[TAU_MIN, TAU_MAX]`
range. For every weight MVE's expected backward is the exact gradient of a loss linear in the
one-hot D; for a quadratic loss its bias shrinks as the weight grows (tests check both).

RLOO (REINFORCE with the leave-one-out baseline) needs the loss of several samples of the same
unit, so it is not a per-unit `custom_vjp`: its registry entry (flagged `score_function`) draws
the samples, and a task that supports it (`accepts_score_function`) builds the surrogate
`rloo_surrogate(f_S, logq_S)`; `rloo_gradient` is the same estimate for the exact-gradient
analysis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from dst_jax.estimators.bernoulli import _on_zero_and_a
from dst_jax.estimators.categorical import _given
from dst_jax.estimators.checks import _as_logits, _prepared
from dst_jax.estimators.cores import _mve_st, _reinmax_cv_st, _softmax_st, _zgr_st
from dst_jax.estimators.noise import _gumbel_noise, _sample, conditional_gumbel

Array = jax.Array

# ----------------------------------------------------------------------------------------------
# ZGR.


def _zgr_at(d, l, logits):
    return _zgr_st(d, l)


def zgr(key: ArrayLike, logits: ArrayLike) -> Array:
    """ZGR (Shekhovtsov 2023): the ST Jacobian averaged with a REINFORCE-like term.

    Forward `D = one_hot(argmax(l + g))`, a sample of `Cat(p)`, `p = softmax(l)`. Backward
    `(J(p) v + ((D - p) . v)(D - p)) / 2`; since `E[(D - p)(D - p)^T] = J(p)`, its expectation
    is the exact gradient for any loss linear (or quadratic) in the one-hot D. No temperature.

    For a one-hot D its backward coincides with ReinMax's at temperature 1:

    >>> import jax, jax.numpy as jnp
    >>> from dst_jax.estimators import reinmax
    >>> from dst_jax.estimators import zgr
    >>> key, logits = jax.random.key(0), jnp.array([[2.0, 0.5, -1.0, 0.0]])
    >>> w = jnp.array([1.0, -2.0, 3.0, 0.5])
    >>> g_zgr = jax.grad(lambda l: (zgr(key, l) * w).sum())(logits)
    >>> g_reinmax = jax.grad(lambda l: (reinmax(key, l, 1.0) * w).sum())(logits)
    >>> bool(jnp.allclose(g_zgr, g_reinmax, atol=1e-6))
    True
    """
    logits = _as_logits(logits, categorical=True)
    d, l, _, _ = _sample(key, logits, None)
    return _zgr_at(d, l, logits)


def zgr_bernoulli(key: ArrayLike, logits: ArrayLike) -> Array:
    """`zgr` on the logits (0, a), second component: a sample of `Bernoulli(sigma(a))`."""
    return _on_zero_and_a(zgr, key, logits)


# ----------------------------------------------------------------------------------------------
# MVE.


def _mve_at(d, l, logits, tau):
    # One weight per categorical: the temperature broadcast over the class axis, first column.
    t = jnp.broadcast_to(tau, l.shape)[..., :1]
    return _mve_st(d, l, t)


def mve(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """MVE (Hooper and Shekhovtsov 2026): forward `D = one_hot(argmax(l + g))`, a sample of
    `Cat(softmax(l))`; backward `S^T v` with `S = mve_matrix(softmax(l), D, tau)`, a K x K solve
    per categorical. `tau` is the published weight `temp` (tau -> 0: the ST Jacobian).

    >>> import jax, jax.numpy as jnp
    >>> from dst_jax.estimators import mve
    >>> key, logits = jax.random.key(0), jnp.array([[2.0, 0.5, -1.0, 0.0]])
    >>> mve(key, logits, 10.0).sum(-1).tolist()  # a one-hot sample of Cat(softmax(l))
    [1.0]
    >>> w = jnp.array([1.0, -2.0, 3.0, 0.5])
    >>> grad = jax.grad(lambda l: (mve(key, l, 1e-6) * w).sum())(logits)
    >>> p = jax.nn.softmax(logits)  # tau -> 0: the ST Jacobian J(p) w
    >>> bool(jnp.allclose(grad, p * (w - (p * w).sum()), atol=1e-5))
    True
    """
    logits, (tau,) = _prepared(logits, tau=tau)
    d, l, _, _ = _sample(key, logits, None)
    return _mve_at(d, l, logits, tau)


def mve_bernoulli(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """`mve` on the logits (0, a), second component: a sample of `Bernoulli(sigma(a))`."""
    return _on_zero_and_a(mve, key, logits, tau=tau)


# ----------------------------------------------------------------------------------------------
# Gapped ST.


def _gap_shift(d: Array, l: Array, gap: float) -> Array:
    """The constant `m` of Gapped ST: the sampled class lifted to the top logit, every other
    class held at least `gap` below it."""
    top = jnp.max(l, axis=-1, keepdims=True)
    l_x = jnp.sum(jnp.where(d > 0, l, 0.0), axis=-1, keepdims=True)
    # A masked class (-inf) stays masked: max(0, -inf) = 0 shifts it by nothing.
    pushed = -jnp.maximum(l - top + gap, 0.0)
    return lax.stop_gradient(jnp.where(d > 0, top - l_x, pushed))


def _gapped_st_at(d, l, logits, tau, gap=1.0):
    m = _gap_shift(d.astype(l.dtype), lax.stop_gradient(l), gap)
    return _softmax_st(d, (l + m) / tau)


def _check_gap(gap) -> float:
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not gap > 0:
        raise ValueError(f"gapped_st needs a static positive number gap, got {gap!r}")
    return float(gap)


def gapped_st(key: ArrayLike, logits: ArrayLike, tau: ArrayLike, gap: float = 1.0) -> Array:
    """Gapped straight-through (Fan et al. 2022): forward `D = one_hot(argmax(l + g))`, a sample
    of `Cat(softmax(l))`; backward `J(softmax((l + m)/tau)) v / tau` with the constant
    `m_x = l_a - l_x` at the sampled x, `m_j = -max(0, l_j - l_a + gap)` elsewhere, `a` the
    argmax of l: the surrogate's arg max is the sample, by a margin of at least `gap` (static).

    >>> import jax, jax.numpy as jnp
    >>> from dst_jax.estimators import gapped_st
    >>> key, logits = jax.random.key(0), jnp.array([[2.0, 0.5, -1.0, 0.0]])
    >>> z = gapped_st(key, logits, 1.0)
    >>> z.sum(-1).tolist(), z.shape
    ([1.0], (1, 4))
    >>> grad = jax.grad(lambda l: (gapped_st(key, l, 1.0) * jnp.arange(4.0)).sum())(logits)
    >>> bool(jnp.isfinite(grad).all()), round(float(grad.sum()), 6)  # J(.) v sums to 0
    (True, 0.0)
    """
    gap = _check_gap(gap)
    logits, (tau,) = _prepared(logits, tau=tau)
    d, l, _, _ = _sample(key, logits, None)
    return _gapped_st_at(d, l, logits, tau, gap)


def gapped_st_bernoulli(
    key: ArrayLike, logits: ArrayLike, tau: ArrayLike, gap: float = 1.0
) -> Array:
    """`gapped_st` on the logits (0, a), second component: a sample of `Bernoulli(sigma(a))`."""
    return _on_zero_and_a(gapped_st, key, logits, tau=tau, gap=gap)


# ----------------------------------------------------------------------------------------------
# ReinMax-CV.


def reinmax_cv(
    key: ArrayLike, logits: ArrayLike, tau: ArrayLike, eta: float = 1.5, k: int = 32
) -> Array:
    """ReinMax-CV (Wang and Bui 2026): ReinMax at tau = 1 plus a Gumbel-Rao control variate.

    Forward `D = one_hot(argmax(l + g))`, a sample of `Cat(p)`, `p = softmax(l)` (the same D as
    `reinmax(key, l, .)`). Backward, with `pi_D = (p + D)/2`, `theta_D = log(pi_D)`:
    `2 J(pi_D) v - J(p) v / 2 + eta (GR_k - GS)`, `GS = J(softmax((theta_D + g')/tau)) v / tau`
    one fresh Gumbel draw `g'`, `GR_k = (1/k) sum_i J(softmax((theta_D + h_i)/tau)) v / tau`
    with `h_i` Gumbel conditioned on `argmax(theta_D + h_i) = argmax(D)`
    (`conditional_gumbel`); both from keys derived from `key`. `eta` (float) and `k` (int) are
    static; the defaults are those of the published code's mapper (eta 1.5, 32 conditional
    draws; its paper quotes k = 100).

    >>> import jax, jax.numpy as jnp
    >>> from dst_jax.estimators import reinmax
    >>> from dst_jax.estimators import reinmax_cv
    >>> key, logits = jax.random.key(0), jnp.array([[2.0, 0.5, -1.0, 0.0]])
    >>> bool((reinmax_cv(key, logits, 1.0) == reinmax(key, logits, 1.0)).all())  # same sample
    True
    >>> w = jnp.array([1.0, -2.0, 3.0, 0.5])
    >>> g0 = jax.grad(lambda l: (reinmax_cv(key, l, 1.0, eta=0.0) * w).sum())(logits)
    >>> g1 = jax.grad(lambda l: (reinmax(key, l, 1.0) * w).sum())(logits)
    >>> bool(jnp.allclose(g0, g1, atol=1e-6))  # eta = 0: no control variate, plain ReinMax
    True
    """
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise ValueError(f"reinmax_cv needs a static integer k >= 1 (conditional draws), got {k!r}")
    if isinstance(eta, bool) or not isinstance(eta, int | float):
        raise ValueError(
            f"reinmax_cv needs a static number eta (control-variate weight), got {eta!r}"
        )
    logits, (tau,) = _prepared(logits, tau=tau)
    d, l, _, invalid = _sample(key, logits, None)
    index = jnp.argmax(jnp.where(invalid, 0, d), axis=-1)
    p = lax.stop_gradient(jax.nn.softmax(l, axis=-1))
    theta = jnp.log((p + jnp.where(invalid, 0, d).astype(p.dtype)) / 2)
    gs_key, gr_key = jax.random.split(jax.random.fold_in(key, 2))
    s_gs = (theta + _gumbel_noise(gs_key, l.shape, l.dtype)) / tau
    s_gr = conditional_gumbel(gr_key, theta, index, k) / tau
    # Masked classes: theta = -inf; keep them -inf (no NaN from -inf - -inf anywhere).
    s_gr = jnp.where(theta == -jnp.inf, -jnp.inf, s_gr)
    scale = jnp.broadcast_to(eta / tau, l.shape)
    return _reinmax_cv_st(d, l, s_gs, s_gr, scale)


def reinmax_cv_bernoulli(
    key: ArrayLike, logits: ArrayLike, tau: ArrayLike, eta: float = 1.5, k: int = 32
) -> Array:
    """`reinmax_cv` on the logits (0, a), second component: a sample of `Bernoulli(sigma(a))`."""
    return _on_zero_and_a(reinmax_cv, key, logits, tau=tau, eta=eta, k=k)


# ----------------------------------------------------------------------------------------------
# RLOO: the unbiased score-function reference.


def rloo(key: ArrayLike, logits: ArrayLike) -> Array:
    """A sample `one_hot(argmax(l + g))` of `Cat(softmax(l))` with zero pathwise gradient.

    The sampling half of RLOO: its gradient is the score-function surrogate a task builds
    from several such samples (`rloo_surrogate`), not a VJP of this function.
    """
    logits = _as_logits(logits, categorical=True)
    d, _, _, _ = _sample(key, logits, None)
    return lax.stop_gradient(d)


def rloo_bernoulli(key: ArrayLike, logits: ArrayLike) -> Array:
    """`rloo` on the logits (0, a), second component: a sample of `Bernoulli(sigma(a))`."""
    return _on_zero_and_a(rloo, key, logits)


def rloo_surrogate(f_S: ArrayLike, logq_S: ArrayLike) -> Array:
    """The RLOO surrogate over the leading axis of S >= 2 samples (any trailing batch shape).

    `f_S` the losses of S samples `z_1..z_S` of the same distribution q, `logq_S` their
    log-probabilities `log q(z_i)` (differentiable in q's parameters). Returns
    `(1/S) sum_i sg(f_i - b_i) log q(z_i)`, `b_i = mean_{j != i} f_j`: its gradient is an
    unbiased estimate of `grad E_q[f]` (each `b_i` is independent of `z_i`), and its value
    is not the loss (add `surrogate - sg(surrogate)` to a loss to take only its gradient).
    """
    f_S, logq_S = jnp.asarray(f_S), jnp.asarray(logq_S)
    n = f_S.shape[0]
    if n < 2:
        raise ValueError(f"RLOO needs at least 2 samples (leave-one-out baseline), got {n}")
    baseline = (jnp.sum(f_S, axis=0, keepdims=True) - f_S) / (n - 1)
    return jnp.mean(lax.stop_gradient(f_S - baseline) * logq_S, axis=0)


def rloo_gradient(key: ArrayLike, logits: ArrayLike, f, n_samples: int) -> Array:
    """One RLOO estimate of `grad_l E_{z ~ Cat(softmax(l))}[f(z)]` from `n_samples` samples.

    `logits` (..., K) are the parameters of one joint distribution (independent categoricals
    over the leading axes); `f(z) -> scalar` for a one-hot z of the logits' shape. The samples
    are `rloo(key_i, l)`, `key_i = split(key, n_samples)[i]`. Returns the logits' shape.
    """
    logits = jnp.asarray(logits)
    keys = jax.random.split(key, n_samples)
    z_S = jax.vmap(lambda k: rloo(k, logits))(keys)
    f_S = jax.vmap(f)(z_S)

    def surrogate(l):
        logp = jax.nn.log_softmax(l, axis=-1)
        # Masked classes (logp = -inf) are never sampled: 0 * -inf must not become NaN.
        terms = jnp.where(z_S > 0, z_S * logp, 0.0)
        logq_S = jnp.sum(terms.reshape(n_samples, -1), axis=-1)
        return rloo_surrogate(f_S, logq_S)

    return jax.grad(surrogate)(logits)


# ----------------------------------------------------------------------------------------------
# The given-sample forms (registry data). Gapped ST's has the default gap: any gap passed goes
# the direct way (the registry voids the form for the option).
zgr_given = _given(_zgr_at, ())
mve_given = _given(_mve_at, (("tau", "tau_b"),))
gapped_st_given = _given(_gapped_st_at, (("tau", "tau_b"),))
