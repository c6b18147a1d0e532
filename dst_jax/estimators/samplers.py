"""Exact samplers of the forward law `Cat(softmax(l/tau))`, for estimators given their sample.

Why a module of its own: an estimator whose backward reads only the forward one-hot `D` (not
the noise that drew it) can take `D` from any exact sampler of its law; the registry composes
the two (`Estimator.sampled`). "gumbel" is the estimators' own draw, bit for bit;
"inverse_cdf" the same law from one uniform per row (another random stream).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from dst_jax.estimators.checks import _finite_rows, _prepared
from dst_jax.estimators.noise import _gumbel_noise, _one_hot_argmax, _scaled

Array = jax.Array

SAMPLERS = ("gumbel", "inverse_cdf")

# Up to this many classes the running sums of `sample_inverse_cdf` are unrolled (one fused
# elementwise pass); beyond, a `lax.scan` over the classes performs the same additions.
_UNROLL_CLASSES = 64


def sample_gumbel_max(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """The estimators' forward sample: `D = one_hot(argmax(l/tau + g))`, `g` standard Gumbel.

    Bit for bit the `D` that `decoupled_st(key, l, tau, .)`, `softmax_ste(key, l, tau)` and the
    other tempered estimators return for the same key (same noise, same ties, same treatment of
    non-finite logits); `tau = 1` gives the forward of `st_gumbel_softmax`, `reinmax` and
    `gumbel_rao`. An exact sample of `Cat(softmax(l/tau))`; no gradient.

    Args:
      key: PRNG key (typed or raw).
      logits: `(..., K)` float array.
      tau: temperature, a scalar or an array that broadcasts to the logits' shape.

    Returns:
      `(..., K)` one-hot, dtype of `logits`; NaN in rows without a distribution.
    """
    logits, (tau,) = _prepared(logits, tau=tau)
    l, invalid = _finite_rows(logits.astype(tau.dtype))
    scores = _scaled(l, tau) + _gumbel_noise(key, l.shape, tau.dtype)
    d = _one_hot_argmax(scores, logits.dtype)
    return jnp.where(invalid, jnp.nan, d).astype(logits.dtype)


def _running_sums(e_KxR: Array) -> Array:
    """Prefix sums along axis 0, `c_k = c_{k-1} + e_k` in index order.

    Each is its predecessor plus one non-negative term, so they never decrease in floating
    point and a zero term repeats its predecessor exactly (a tree-shaped scan guarantees
    neither).
    """
    if e_KxR.shape[0] <= _UNROLL_CLASSES:
        sums = [e_KxR[0]]
        for e in e_KxR[1:]:
            sums.append(sums[-1] + e)
        return jnp.stack(sums)

    def add(total, e):
        total = total + e
        return total, total

    return lax.scan(add, jnp.zeros_like(e_KxR[0]), e_KxR)[1]


def sample_inverse_cdf(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """An exact sample of `Cat(softmax(l/tau))` from ONE uniform per row, by inversion:

        e_k = exp(l_k/tau - max_j l_j/tau),  c_k = e_0 + ... + e_k,  u ~ U(0, 1],
        index = #{k : c_k < u c_{K-1}},      D = one_hot(index).

    Equal in law to Gumbel-max (`sample_gumbel_max`), not equal sample by sample: another
    random stream. It draws 1 uniform per row where Gumbel-max draws 2K (high-precision Gumbel
    noise), and needs no argmax. Resolution: `u` is a float32 (float64 for float64 logits)
    uniform on a grid of 2^-23 (2^-52), and the sums carry the compute dtype's rounding, so a
    class of probability p is drawn with probability p up to about 1e-7 (float32); Gumbel-max
    in "high" mode resolves probabilities down to about 1e-14. Zero-probability classes
    (`-inf` logits, or `exp` underflow at small `tau`) are never drawn, since `u > 0` and a zero
    term leaves the sum unchanged; `+inf`, NaN and all-`-inf` rows follow the module's
    "Non-finite logits" contract. No gradient.

    Args:
      key: PRNG key (typed or raw).
      logits: `(..., K)` float array.
      tau: temperature, a scalar or an array that broadcasts to the logits' shape.

    Returns:
      `(..., K)` one-hot, dtype of `logits`; NaN in rows without a distribution.
    """
    logits, (tau,) = _prepared(logits, tau=tau)
    l, invalid = _finite_rows(logits.astype(tau.dtype))
    s_KxR = jnp.moveaxis(_scaled(l, tau), -1, 0)
    sums_KxR = _running_sums(jnp.exp(s_KxR - jnp.max(s_KxR, axis=0)))
    # 1 - U[0, 1) lies in (0, 1]: u > 0 keeps a leading zero-probability class from being drawn,
    # and u * c_{K-1} <= c_{K-1} keeps the index below K.
    u_R = 1 - jax.random.uniform(key, s_KxR.shape[1:], s_KxR.dtype)
    index = jnp.sum(sums_KxR < u_R * sums_KxR[-1], axis=0, dtype=jnp.int32)
    d = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
    return jnp.where(invalid, jnp.nan, d).astype(logits.dtype)


_SAMPLER_FUNCTIONS = {"gumbel": sample_gumbel_max, "inverse_cdf": sample_inverse_cdf}
