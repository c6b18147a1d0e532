"""The straight-through cores: `custom_vjp` functions whose value is the sample and whose VJP
is a surrogate's.

Why a module of its own: the hard value is computed outside (argmax and comparisons have no
gradient), so each core is "return z" with a custom backward; keeping them apart from the
sampling code makes each estimator "a sample, then a core", and the 1/tau factors come from
autodiff of the scaled logits passed in. `J(pi) = diag(pi) - pi pi^T`, `v` the cotangent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

# with a custom backward, and the 1/tau factors come from autodiff of the scaled logits.


def _jvp_at(p: Array, v: Array) -> Array:
    """J(p) v = p * (v - <p, v>), without building the K x K matrix."""
    return p * (v - jnp.sum(p * v, axis=-1, keepdims=True))


@jax.custom_vjp
def _softmax_st(z: Array, s: Array) -> Array:
    """Value z; backward v -> J(softmax(s)) v."""
    return z


def _softmax_st_fwd(z: Array, s: Array) -> tuple[Array, Array]:
    return z, jax.nn.softmax(s, axis=-1)


def _softmax_st_bwd(p: Array, v: Array) -> tuple[None, Array]:
    return None, _jvp_at(p, v.astype(p.dtype))


_softmax_st.defvjp(_softmax_st_fwd, _softmax_st_bwd)


@jax.custom_vjp
def _sigmoid_st(z: Array, s: Array) -> Array:
    """Value z; backward v -> sigma'(s) v, with sigma'(s) = sigma(s) sigma(-s) (no cancellation)."""
    return z


def _sigmoid_st_fwd(z: Array, s: Array) -> tuple[Array, Array]:
    return z, jax.nn.sigmoid(s) * jax.nn.sigmoid(-s)


def _sigmoid_st_bwd(dsigma: Array, v: Array) -> tuple[None, Array]:
    return None, dsigma * v.astype(dsigma.dtype)


_sigmoid_st.defvjp(_sigmoid_st_fwd, _sigmoid_st_bwd)


@jax.custom_vjp
def _identity_st(z: Array, logits: Array) -> Array:
    """Value z; backward v -> v, passed to `logits` (same dtype as z)."""
    return z


_identity_st.defvjp(lambda z, logits: (z, None), lambda _, v: (None, v))


@jax.custom_vjp
def _reinmax_st(z: Array, u0: Array, p_b: Array) -> Array:
    """Value z (the one-hot D); backward v -> (2 J(pi1) v - J(pi0) v / 2) for `u0`, with
    pi0 = softmax(u0), pi1 = (p_b + D) / 2; `p_b` is a constant (no cotangent)."""
    return z


def _reinmax_st_fwd(z, u0, p_b):
    pi0 = jax.nn.softmax(u0, axis=-1)
    pi1 = (p_b + z.astype(p_b.dtype)) / 2
    return z, (pi0, pi1)


def _reinmax_st_bwd(res, v):
    pi0, pi1 = res
    v = v.astype(pi0.dtype)
    return None, 2 * _jvp_at(pi1, v) - 0.5 * _jvp_at(pi0, v), None


_reinmax_st.defvjp(_reinmax_st_fwd, _reinmax_st_bwd)


@jax.custom_vjp
def _rao_st(z: Array, s_k: Array) -> Array:
    """Value z; backward v -> (1/k) sum_i J(softmax(s_k[i])) v, one cotangent per draw."""
    return z


def _rao_st_fwd(z, s_k):
    return z, jax.nn.softmax(s_k, axis=-1)


def _rao_st_bwd(p_k, v):
    return None, _jvp_at(p_k, v.astype(p_k.dtype)[None]) / p_k.shape[0]


_rao_st.defvjp(_rao_st_fwd, _rao_st_bwd)


def _cast_d(d: Array, dtype) -> Array:
    return d.astype(dtype)


@jax.custom_vjp
def _zgr_st(z: Array, u: Array) -> Array:
    """Value z (the one-hot D); backward v -> (J(p) v + ((D - p) . v)(D - p)) / 2, with
    p = softmax(u)."""
    return z


def _zgr_st_fwd(z, u):
    p = jax.nn.softmax(u, axis=-1)
    return z, (p, _cast_d(z, p.dtype))


def _zgr_st_bwd(res, v):
    p, d = res
    v = v.astype(p.dtype)
    # D - p is 0 at a masked class (p = 0, never sampled), so it gets no gradient.
    r = jnp.where(p > 0, d - p, 0.0)
    return None, (_jvp_at(p, v) + r * jnp.sum(r * v, axis=-1, keepdims=True)) / 2


_zgr_st.defvjp(_zgr_st_fwd, _zgr_st_bwd)


def mve_matrix(p: Array, d: Array, t: Array) -> Array:
    """The published MVE's S (..., K, K) at probabilities p, sample one-hot d, weight t.

    With `c_ij = 1 + t (p_i + p_j)`: solve `A V = B` with `A_ij = -t p_i p_j / c_ij` (i != j),
    `A_ii = (1 + t p_i) sum_{j != i} p_j / c_ij + p_i / (1 + 2 t p_i)` (the published diagonal
    `(1 + t p_i) sum_j p_j / c_ij - t p_i^2 / (1 + 2 t p_i)`, rewritten without its
    cancellation), `B = diag((1 + t p) / (1 + 2 t p)) J(p)`; then, with x the sampled index,
    `S_ik = ((1 + t p_i) V_ik - t p_i V_xk + [i = x] t J(p)_xk) / (1 + t (p_i + p_x))`.
    The estimator's VJP is `S^T v`; t = 0 gives `S = J(p)`.
    """
    t = jnp.asarray(t, p.dtype)
    t1, t2 = t[..., None], t[..., None, None]  # against (..., K) and (..., K, K)
    k = p.shape[-1]
    eye = jnp.eye(k, dtype=p.dtype)
    p_i, p_j = p[..., :, None], p[..., None, :]
    jac = p_i * (eye - p_j)
    c = 1 + t2 * (p_i + p_j)
    off = jnp.where(eye > 0, 0.0, p_j / c)
    diag = (1 + t1 * p) * jnp.sum(off, axis=-1) + p / (1 + 2 * t1 * p)
    a = jnp.where(eye > 0, diag[..., None] * eye, -t2 * p_i * p_j / c)
    ratio = (1 + t1 * p) / (1 + 2 * t1 * p)
    v = jnp.linalg.solve(a, ratio[..., None] * jac)
    v_x = jnp.einsum("...i,...ik->...k", d, v)[..., None, :]  # row x of V, (..., 1, K)
    j_x = jnp.einsum("...i,...ik->...k", d, jac)[..., None, :]
    p_x = jnp.sum(d * p, axis=-1)[..., None, None]
    numer = (1 + t2 * p_i) * v - t2 * p_i * v_x + d[..., :, None] * t2 * j_x
    return numer / (1 + t2 * (p_i + p_x))


@jax.custom_vjp
def _mve_st(z: Array, u: Array, t: Array) -> Array:
    """Value z (the one-hot D); backward v -> S^T v, S = mve_matrix(softmax(u), D, t)."""
    return z


def _mve_st_fwd(z, u, t):
    p = jax.nn.softmax(u, axis=-1)
    return z, (p, _cast_d(z, p.dtype), t)


def _mve_st_bwd(res, v):
    p, d, t = res
    # The K x K solve runs only in the backward pass (the forward never needs S).
    s = mve_matrix(p, d, t[..., 0])
    return None, jnp.einsum("...ij,...i->...j", s, v.astype(p.dtype)), None


_mve_st.defvjp(_mve_st_fwd, _mve_st_bwd)


@jax.custom_vjp
def _reinmax_cv_st(z: Array, u: Array, s_gs: Array, s_gr: Array, scale: Array) -> Array:
    """Value z (the one-hot D); backward v -> 2 J(pi_D) v - J(p) v / 2
    + scale (mean_i J(softmax(s_gr[i])) v - J(softmax(s_gs)) v), p = softmax(u),
    pi_D = (p + D)/2; scale = eta / tau. Only u gets a cotangent."""
    return z


def _reinmax_cv_st_fwd(z, u, s_gs, s_gr, scale):
    p = jax.nn.softmax(u, axis=-1)
    res = (p, (p + _cast_d(z, p.dtype)) / 2, jax.nn.softmax(s_gs, -1), jax.nn.softmax(s_gr, -1))
    return z, (*res, scale)


def _reinmax_cv_st_bwd(res, v):
    p, pi_d, p_gs, p_gr, scale = res
    v = v.astype(p.dtype)
    reinmax = 2 * _jvp_at(pi_d, v) - 0.5 * _jvp_at(p, v)
    cv = jnp.mean(_jvp_at(p_gr, v[None]), axis=0) - _jvp_at(p_gs, v)
    return None, reinmax + scale * cv, None, None, None


_reinmax_cv_st.defvjp(_reinmax_cv_st_fwd, _reinmax_cv_st_bwd)
