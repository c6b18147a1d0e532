"""The estimators' noise: Gumbel and Logistic draws, Gumbel-max samples and the argmax one-hot.

Why a module of its own: every estimator's forward is a Gumbel-max sample drawn here, so the
random stream (which committed results depend on, bit for bit) is written once; the tests
rebuild the analytic Jacobians from these exact draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from dst_jax.estimators.checks import _as_logits, _compute_dtype, _finite_rows

Array = jax.Array


def _gumbel_noise(key: ArrayLike, shape: tuple[int, ...], dtype: jnp.dtype) -> Array:
    """Standard Gumbel noise, untruncated up to about 32 (see the module docstring)."""
    return jax.random.gumbel(key, shape, dtype=dtype, mode="high")


def _gumbel_pair(key: ArrayLike, shape: tuple[int, ...], dtype: jnp.dtype) -> tuple[Array, Array]:
    """(g0, g1): the Gumbel draw a categorical estimator makes for logits `[0, a]`, split."""
    g = _gumbel_noise(key, (*shape, 2), dtype)
    return g[..., 0], g[..., 1]


def _rao_key(key: ArrayLike) -> Array:
    # The conditional draws need noise independent of the forward's `g`, which uses `key` itself.
    return jax.random.fold_in(key, 1)


def conditional_gumbel(key: ArrayLike, logits: Array, index: Array, k: int) -> Array:
    """k Gumbel vectors `h` conditioned on `argmax(l + h) = index` (Paulus et al. 2021).

    With `E ~ Exp(1)` i.i.d. and `m = index`: `z_m = logsumexp(l) - log E_m` (the maximum of
    `l + h` is Gumbel with location `logsumexp(l)`, independent of the argmax), and for `j != m`
    `z_j = -log(exp(-z_m) + E_j exp(-l_j))` (a Gumbel of location `l_j` truncated below `z_m`),
    computed in log space; `h = z - l`. Returns `z = l + h`, shape `(k, ..., K)`, in `logits`'
    dtype. `-inf` logits give `z_j = -inf`.
    """
    # E = -log(u) with u in [tiny, 1): never 0 (log E = -inf would give z_m = inf, a NaN
    # gradient; jax.random.exponential returns 0 with probability 2^-23 per draw in float32).
    tiny = jnp.finfo(logits.dtype).tiny
    u = jax.random.uniform(key, (k, *logits.shape), logits.dtype, minval=tiny, maxval=1.0)
    log_e = jnp.log(-jnp.log(u))
    z_top = jax.nn.logsumexp(logits, axis=-1, keepdims=True) - jnp.take_along_axis(
        log_e, jnp.broadcast_to(index[..., None], (k, *index.shape, 1)), axis=-1
    )
    z_rest = -jnp.logaddexp(-z_top, log_e - logits)
    is_top = jnp.arange(logits.shape[-1]) == index[..., None]
    return jnp.where(is_top, z_top, z_rest)


def _one_hot_argmax(scores: Array, dtype: jnp.dtype) -> Array:
    """`one_hot(argmax(scores))` over the last axis, as `jnp.argmax` picks: the first maximum,
    or the first NaN of a row that holds one.

    Computed with the classes on the leading axis, as a max and then the least index attaining
    it: two plain reductions that vectorise across rows. XLA's CPU argmax (a variadic reduce
    over the short class axis) evaluates its fused producer element by element, which for the
    Gumbel noise of 48,000 x 16 logits took about 30 ms against 16 ms for drawing the noise.
    """
    k = scores.shape[-1]
    s_Kx = jnp.moveaxis(scores, -1, 0)
    top = jnp.max(s_Kx, axis=0)  # NaN in a row with a NaN: then the first NaN is the argmax
    index_Kx = lax.broadcasted_iota(jnp.int32, s_Kx.shape, 0)
    first = jnp.min(jnp.where((s_Kx == top) | jnp.isnan(s_Kx), index_Kx, k), axis=0)
    return jax.nn.one_hot(first, k, dtype=dtype)


def _scaled(l: Array, tau: Array) -> Array:
    """`l / tau` up to a constant per row, accurate enough near the row's top for sampling.

    In float32 `l / tau` carries an absolute rounding error of up to half a unit in the last
    place of its magnitude: at `l = 10, tau = 1e-6` that is 0.5, which swamps the Gumbel noise
    (ties go to the first class) and the gaps between near-tied classes. Where the row's
    `|max(l) / tau|` reaches `2^(mantissa bits - 13)` (1024 in float32), the row maximum is
    subtracted before dividing, `(l - max(l)) / tau`: the difference is exact for the classes
    that can win (Sterbenz), so the scaled gaps keep the precision of the gaps themselves.
    Below that bound the direct `l / tau` is kept, bit for bit as before: the scores' rounding
    error stays below 2^-13 there, which moves no class's probability by more than about 1e-4. A
    temperature that varies along the class axis cannot be shifted this way; its row maximum of
    `l / tau` is subtracted instead (exact ties stay exact, near-ties keep `l / tau`'s rounding).
    """
    bound = 2.0 ** (jnp.finfo(l.dtype).nmant - 13)
    if tau.ndim and tau.shape[-1] != 1:
        direct = l / tau
        top = jnp.max(direct, axis=-1, keepdims=True)
        return jnp.where(jnp.abs(top) >= bound, direct - top, direct)
    top = jnp.max(l, axis=-1, keepdims=True)
    return jnp.where(jnp.abs(top / tau) >= bound, l - top, l) / tau


def _sample(key: ArrayLike, logits: Array, tau: Array | None) -> tuple[Array, Array, Array, Array]:
    """(D, l, g, invalid): Gumbel-max sample D of Cat(softmax(l/tau)) (tau None: 1) in logits'
    dtype, NaN in invalid rows; l the finite-row logits in the compute dtype; g the noise."""
    dtype = tau.dtype if tau is not None else _compute_dtype(logits.dtype)
    l, invalid = _finite_rows(logits.astype(dtype))
    g = _gumbel_noise(key, l.shape, dtype)
    d = _one_hot_argmax(_scaled(l, jnp.ones((), dtype) if tau is None else tau) + g, logits.dtype)
    return jnp.where(invalid, jnp.nan, d).astype(logits.dtype), l, g, invalid


def _bernoulli_sample(key, a: Array, tau: Array | None) -> tuple[Array, Array, Array]:
    """(z, a in the compute dtype, L): `1[a/tau + L > 0]` (tau None: 1), NaN where a is NaN."""
    a_c = a.astype(_compute_dtype(a.dtype))
    g0, g1 = _gumbel_pair(key, a.shape, a_c.dtype)
    z = ((a_c if tau is None else a_c / tau) + g1 > g0).astype(a.dtype)
    return jnp.where(jnp.isnan(a), jnp.nan, z).astype(a.dtype), a_c, g1 - g0


def argmax_one_hot(logits: ArrayLike) -> Array:
    """`one_hot(argmax(l))` over the last axis, the mode of `Cat(softmax(l/tau))` for any tau.

    Shape `(..., K)` and dtype of `logits`.
    """
    logits = _as_logits(logits, categorical=True)
    return _one_hot_argmax(logits, logits.dtype)


def bernoulli_mode(logits: ArrayLike) -> Array:
    """`1[a > 0]`, the mode of `Bernoulli(sigma(a/tau))` for any tau; shape and dtype of `a`."""
    logits = _as_logits(logits, categorical=False)
    return (logits > 0).astype(logits.dtype)
