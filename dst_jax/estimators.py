"""Straight-through estimators for categorical and Bernoulli units, and their registry.

Each estimator returns a hard sample in the forward pass and, in the backward pass, the Jacobian
(or another VJP) of a smooth surrogate in place of the (zero) Jacobian of the sample. Decoupled
ST gives the two passes their own temperatures: `tau_f` sets how random the forward sample is,
`tau_b` how the backward gradient spreads across categories.

Notation: `l` logits (categories on the last axis), `g` standard Gumbel noise of `l`'s shape,
`L = g1 - g0` standard Logistic noise, `sigma` the logistic sigmoid, `D` the forward one-hot,
`J(pi) = diag(pi) - pi pi^T` (the softmax Jacobian written at its value), `v` the cotangent::

    estimator                     forward value                backward (the VJP of v)
    decoupled_st(l, tau_f, tau_b) D = one_hot(argmax(l/tau_f+g)) J(softmax(l/tau_b)) v / tau_b
      backward_noise=True         same                         J(softmax(l/tau_b + g)) v / tau_b
    softmax_ste(l, tau)           one_hot(argmax(l/tau + g))   J(softmax(l/tau)) v / tau
    st_gumbel_softmax(l, tau)     one_hot(argmax(l + g))       J(softmax((l + g)/tau)) v / tau
    identity_ste(l, tau)          one_hot(argmax(l/tau + g))   v
    reinmax(l, tau)               D = one_hot(argmax(l + g))   2 J(pi1) v - J(pi0) v / 2,
                                                               pi0 = softmax(l),
                                                               pi1 = (softmax(l/tau) + D) / 2
    decoupled_reinmax(l, tau_f, tau_b)
                                  D = one_hot(argmax(l/tau_f+g)) (2 J(pi1) v - J(pi0) v/2) / tau_f,
                                                               pi0 = softmax(l/tau_f),
                                                               pi1 = (softmax(l/tau_b) + D) / 2
    gumbel_rao(l, tau, k=10)      D = one_hot(argmax(l + g))   (1/k) sum_i J(softmax((l+h_i)/tau)) v
                                                               / tau, h_i Gumbel given argmax D
    softmax_relaxation(l)         softmax(l) (no sample)       J(softmax(l)) v

(every function takes the PRNG key first: `decoupled_st(key, l, tau_f, tau_b)`.)

The Bernoulli form of each (`*_bernoulli`, `sigmoid_ste`, `st_gumbel_sigmoid`, ...) is the
categorical estimator on the two logits `(0, a)`, returning the second component: a sample
`1[a/tau_f + L > 0]` of `Bernoulli(sigma(a/tau_f))` and, for the paper's four, the surrogate
`sigma'(.)` in place of the softmax Jacobian. The forward values are exact samples of
`Cat(softmax(l/tau_f))` (Gumbel-max) and `Bernoulli(sigma(a/tau_f))`; `st_gumbel_*`, `reinmax`
and `gumbel_rao` sample at temperature 1 whatever `tau`.

`REGISTRY` lists every estimator once (name, categorical and Bernoulli functions, which
temperatures it reads); the tasks, the sweep grid, results and figures read it, so a new estimator
is one function, one `register(...)` call and its tests.

Samplers. Where an estimator's backward needs only the forward one-hot `D`, not the noise that
drew it (decoupled_st without backward noise, softmax_ste, identity_ste, reinmax,
decoupled_reinmax; not st_gumbel_softmax, gumbel_rao), its registry entry carries a
`GivenSample`: the backward applied to a given sample, `straight_through(d, l, tau_f, tau_b)`,
and the temperature `forward_tau(tau_f, tau_b)` whose law `Cat(softmax(l/tau))` the sample must
follow. `Estimator.sampled(sampler)` composes it with a sampler of `SAMPLERS`::

    "gumbel"       `sample_gumbel_max`: the estimators' own draw, bit for bit (today's stream);
    "inverse_cdf"  `sample_inverse_cdf`: one uniform u per row, index = #{k : cdf_k < u} over
                   the cumulative softmax(l/tau); the same law, another stream, 2K times fewer
                   random bits than high-precision Gumbel noise.

Conventions:
- Shapes and dtypes. Categorical logits have shape `(..., K)`, any leading batch shape; Bernoulli
  logits any shape, scalars included. The output has the logits' shape and dtype; so does the
  logits' gradient. bfloat16/float16 logits are processed in float32 (noise, scores, softmax),
  float64 logits in float64.
- Noise. `g` is drawn with `jax.random.gumbel(..., mode="high")` in that compute dtype. The
  default "low" mode maps one 32-bit uniform through `-log(-log(u))`, which caps `g` near 16, so a
  class whose scaled logit `l/tau_f` trails the leader by more than about 20 is never drawn,
  although its probability `exp(-gap)` is not zero; gaps grow like `1/tau_f`, so small forward
  temperatures live in that tail. "high" mode builds `u` from two uniforms and moves the cap to
  about 32, at twice the random bits. The scores `l/tau_f` are formed so that float rounding
  of a large `|l/tau_f|` (small temperatures) does not swallow the noise: where the row's
  `|max(l)/tau_f|` exceeds 1024 (float32) the row maximum is subtracted before dividing
  (`_scaled`), which changes no sample below that bound.
- Logistic noise for the paper's Bernoulli estimators is `L = g[..., 1] - g[..., 0]` with `g` the
  Gumbel draw of shape `a.shape + (2,)`, which is exactly the draw a categorical estimator makes
  for logits `[0, a]` under the same key: a Bernoulli sample equals the categorical one's class-1
  entry bit for bit.
- Temperatures are ordinary array arguments (scalars, or arrays that broadcast to the logits'
  shape), so a grid of temperatures is `jax.vmap`. Their gradient is zero: they enter through
  `lax.stop_gradient`. The key never enters a `custom_vjp`: noise is drawn outside it, so keys of
  either kind (`jax.random.key` or raw `jax.random.PRNGKey`) get the usual float0 cotangent.
- Validation. A concrete temperature outside `[TAU_MIN, TAU_MAX]` (or not a finite number) raises
  a `ValueError` naming the argument; for float16 logits the lower bound is `TAU_MIN_FLOAT16`,
  because a surrogate slope of up to `1/(4 tau)` must fit float16's range (65,504). Under
  `jit`/`vmap` temperatures are tracers and the check is skipped (a traced check would need
  `checkify` in every caller); the grid-level guard is `check_temperatures` (give it
  `dtype=jnp.float16` for float16 logits), which the sweep engine calls on the concrete grid
  before compiling.
- Non-finite logits. `-inf` masks a class: it is never sampled and gets a zero gradient, the
  other classes' gradients stay finite. `+inf` classes are certain: the sample is one of them
  (uniformly if several), and the row's gradient is zero. A row holding a NaN, or only `-inf`,
  has no distribution: its sample is NaN, so is any loss computed from it, which a training
  loop's divergence check sees (the surrogates' gradients for that row are NaN as well; the
  identity backward passes the cotangent on). Bernoulli units follow from their `(0, a)` form:
  `a = +inf` gives 1, `-inf` gives 0 (zero gradient), NaN gives NaN.
- `backward_noise` and `k` are static Python values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

__all__ = [
    "BERNOULLI",
    "CATEGORICAL",
    "NAMES",
    "REFERENCE",
    "REGISTRY",
    "SAMPLERS",
    "TAU_MAX",
    "TAU_MIN",
    "Estimator",
    "GivenSample",
    "argmax_one_hot",
    "bernoulli_mode",
    "bernoulli_name",
    "check_temperatures",
    "conditional_gumbel",
    "decoupled_reinmax",
    "decoupled_reinmax_bernoulli",
    "decoupled_st",
    "decoupled_st_bernoulli",
    "get",
    "gumbel_rao",
    "gumbel_rao_bernoulli",
    "identity_ste",
    "identity_ste_bernoulli",
    "lookup",
    "register",
    "reinmax",
    "reinmax_bernoulli",
    "sample_gumbel_max",
    "sample_inverse_cdf",
    "sigmoid_relaxation",
    "sigmoid_ste",
    "softmax_relaxation",
    "softmax_ste",
    "st_gumbel_sigmoid",
    "st_gumbel_softmax",
]

Array = jax.Array
# The uniform form used by tasks and the sweep engine: (key, logits, tau_f, tau_b) -> sample.
Uniform = Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Array]

# Temperatures every estimator accepts (for float32, bfloat16 and float64 logits). The range
# keeps `l / tau` finite for logits far beyond |l| = 50 and `1 / tau` far from overflow.
TAU_MIN, TAU_MAX = 1e-6, 1e6
TAU_MIN_FLOAT16 = 1e-4

# The paper's temperature axis (DESIGN.md section 2), the default for both tau_f and tau_b of a
# sweep and of the gradient analysis.
DEFAULT_TAUS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)


# ----------------------------------------------------------------------------------------------
# Input checks.


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    # Half-precision logits are promoted to float32; float64 stays float64.
    return jnp.promote_types(dtype, jnp.float32)


def _as_logits(logits: ArrayLike, categorical: bool) -> Array:
    logits = jnp.asarray(logits)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(
            f"logits must be a floating-point array, got dtype {logits.dtype}; "
            "cast them first, e.g. logits.astype(jnp.float32)."
        )
    if categorical and logits.ndim == 0:
        raise ValueError(
            "a categorical estimator needs logits with a category axis (the last axis), got a "
            "scalar; pass shape (..., K), or use a Bernoulli estimator for one binary unit."
        )
    if categorical and logits.shape[-1] == 0:
        raise ValueError(f"logits have an empty category axis (shape {logits.shape}); K >= 1.")
    return logits


def _check_concrete(name: str, value: ArrayLike, tau_min: float = TAU_MIN) -> None:
    """Raises ValueError unless every entry of the concrete `value` is in [tau_min, TAU_MAX]."""
    v = np.asarray(value)
    if v.dtype.kind not in "biuf" and v.dtype.name not in ("bfloat16", "float16"):
        raise ValueError(f"{name} must be a real number, got {value!r} (dtype {v.dtype}).")
    v = v.astype(np.float64)
    bad = ~(np.isfinite(v) & (v > 0))
    one, many = "a positive finite number", "positive finite numbers"
    if not bad.any():
        bad = (v < tau_min) | (v > TAU_MAX)
        one = f"a number in [{tau_min:g}, {TAU_MAX:g}]"
        many = f"numbers in [{tau_min:g}, {TAU_MAX:g}]"
    if bad.any():
        if v.ndim == 0:
            raise ValueError(f"{name} must be {one}, got {v.item()!r}.")
        raise ValueError(
            f"{name} must hold {many}, got {v[bad][:5].tolist()} "
            f"({int(bad.sum())} bad of {v.size}, array shape {v.shape})."
        )


def check_temperatures(*, dtype: jnp.dtype | None = None, **temperatures: ArrayLike) -> None:
    """Validates concrete temperatures, e.g. a sweep grid, before anything is traced.

    Call it outside `jit`/`vmap`, where the estimators themselves cannot check their traced
    temperatures: `check_temperatures(tau_f=grid_f, tau_b=grid_b)`. A value is refused if it is
    not a finite number in `[TAU_MIN, TAU_MAX]` (`[TAU_MIN_FLOAT16, TAU_MAX]` when `dtype`, the
    logits' dtype, is float16), or if it is a tracer.

    Raises:
      ValueError: naming the argument.
    """
    for name, value in temperatures.items():
        if isinstance(value, jax.core.Tracer):
            raise ValueError(
                f"check_temperatures needs concrete values but {name} is traced; call it outside "
                "jit/vmap, on the grid of temperatures before it enters the compiled function."
            )
        float16 = dtype is not None and jnp.dtype(dtype) == jnp.float16
        _check_concrete(name, value, TAU_MIN_FLOAT16 if float16 else TAU_MIN)


def _as_temperature(tau: ArrayLike, name: str, logits: Array) -> Array:
    if not isinstance(tau, jax.core.Tracer):
        _check_concrete(name, tau, TAU_MIN_FLOAT16 if logits.dtype == jnp.float16 else TAU_MIN)
    tau = jnp.asarray(tau, _compute_dtype(logits.dtype))
    try:
        shape = np.broadcast_shapes(tau.shape, logits.shape)
    except ValueError:
        shape = None
    if shape != logits.shape:
        raise ValueError(
            f"{name} of shape {tau.shape} must be a scalar or broadcast to the logits' shape "
            f"{logits.shape} (for one temperature per example of categorical logits use shape "
            "(B, 1)); use jax.vmap for a grid of temperatures."
        )
    # Temperatures are hyperparameters: no gradient flows into them.
    return lax.stop_gradient(tau)


def _finite_rows(l: Array) -> tuple[Array, Array]:
    """(l with +inf rows made finite, invalid-row mask (..., 1)); see "Non-finite logits".

    A row with a `+inf` becomes 0 at its `+inf` classes and `-inf` elsewhere: the limit law
    (uniform over the certain classes), and, through the `where`, a zero gradient for that row.
    """
    pos = l == jnp.inf
    any_pos = jnp.any(pos, axis=-1, keepdims=True)
    l = jnp.where(any_pos, jnp.where(pos, 0.0, -jnp.inf).astype(l.dtype), l)
    invalid = jnp.any(jnp.isnan(l), axis=-1, keepdims=True) | jnp.all(
        l == -jnp.inf, axis=-1, keepdims=True
    )
    return l, invalid


# ----------------------------------------------------------------------------------------------
# Noise. Tests rebuild the analytic Jacobians from these exact draws.


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


# ----------------------------------------------------------------------------------------------
# Straight-through cores: the value is `z`; the backward pass is a surrogate's. The hard value
# is computed outside (argmax and comparisons have no gradient), so each core is "return z"
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


def _one_hot_argmax(scores: Array, dtype: jnp.dtype) -> Array:
    return jax.nn.one_hot(jnp.argmax(scores, axis=-1), scores.shape[-1], dtype=dtype)


def _prepared(logits: ArrayLike, **temperatures: ArrayLike) -> tuple[Array, list[Array]]:
    """Checked categorical logits and temperatures in the compute dtype."""
    logits = _as_logits(logits, categorical=True)
    return logits, [_as_temperature(t, n, logits) for n, t in temperatures.items()]


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


# ----------------------------------------------------------------------------------------------
# Categorical estimators. Shapes: logits (..., K) -> one-hot (..., K).


def decoupled_st(
    key: ArrayLike,
    logits: ArrayLike,
    tau_f: ArrayLike,
    tau_b: ArrayLike,
    backward_noise: bool = False,
) -> Array:
    """Decoupled straight-through estimator for a categorical over the last axis.

    Forward: `D = one_hot(argmax(l/tau_f + g))`, an exact sample of `Cat(softmax(l/tau_f))`.
    Backward: `J(softmax(l/tau_b)) v / tau_b`; with `backward_noise=True`,
    `J(softmax(l/tau_b + g)) v / tau_b` with the forward's `g`.

    Args:
      key: PRNG key (typed or raw).
      logits: `(..., K)` float array.
      tau_f, tau_b: forward and backward temperatures (scalars or broadcastable).
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
    logits, (tau_f, tau_b) = _prepared(logits, tau_f=tau_f, tau_b=tau_b)
    d, l, g, _ = _sample(key, logits, tau_f)
    return _softmax_st(d, l / tau_b + g if backward_noise else l / tau_b)


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
    return _softmax_st(d, l / tau)


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
    d, _, _, _ = _sample(key, logits, tau)
    return _identity_st(d, logits)


def decoupled_reinmax(
    key: ArrayLike, logits: ArrayLike, tau_f: ArrayLike, tau_b: ArrayLike
) -> Array:
    """ReinMax with its own forward temperature: `reinmax` applied to `l/tau_f` with temperature
    `tau_b/tau_f`.

    Forward: `D = one_hot(argmax(l/tau_f + g))`, a sample of `Cat(pi0)`, `pi0 = softmax(l/tau_f)`.
    Backward: `(2 J(pi1) v - J(pi0) v / 2) / tau_f` with `pi1 = (softmax(l/tau_b) + D) / 2`.
    `decoupled_reinmax(key, l, 1, tau) == reinmax(key, l, tau)` exactly.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax.estimators import decoupled_reinmax
        >>> key, logits = jax.random.key(0), jnp.array([[2.0, 0.5, -1.0, 0.0]])
        >>> z = decoupled_reinmax(key, logits, 0.3, 2.0)
        >>> z.shape, z.sum().item()
        ((1, 4), 1.0)
    """
    logits, (tau_f, tau_b) = _prepared(logits, tau_f=tau_f, tau_b=tau_b)
    return _decoupled_reinmax(key, logits, tau_f, tau_b)


def _decoupled_reinmax(key, logits, tau_f, tau_b):
    d, l, _, _ = _sample(key, logits, tau_f)
    p_b = lax.stop_gradient(jax.nn.softmax(l / tau_b, axis=-1))
    return _reinmax_st(d, l / tau_f, p_b)


def reinmax(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """ReinMax (Liu et al. 2023, "Bridging Discrete and Backpropagation").

    Forward: `D = one_hot(argmax(l + g))`, a sample of `Cat(pi0)`, `pi0 = softmax(l)`; `tau`
    does not change the forward. Backward: `2 J(pi1) v - J(pi0) v / 2`,
    `pi1 = (softmax(l/tau) + D) / 2`: a second-order (Heun) correction of the straight-through
    gradient.

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
    return _decoupled_reinmax(key, logits, jnp.ones_like(tau), tau)


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


# ----------------------------------------------------------------------------------------------
# Bernoulli estimators. Shapes: logits (...) -> {0, 1} values (...). The paper's four are
# written out with the sigmoid surrogate (cheaper than a two-class softmax, and equal to it);
# the others are their categorical form on the logits (0, a).


def _bernoulli_sample(key, a: Array, tau: Array | None) -> tuple[Array, Array, Array]:
    """(z, a in the compute dtype, L): `1[a/tau + L > 0]` (tau None: 1), NaN where a is NaN."""
    a_c = a.astype(_compute_dtype(a.dtype))
    g0, g1 = _gumbel_pair(key, a.shape, a_c.dtype)
    z = ((a_c if tau is None else a_c / tau) + g1 > g0).astype(a.dtype)
    return jnp.where(jnp.isnan(a), jnp.nan, z).astype(a.dtype), a_c, g1 - g0


def decoupled_st_bernoulli(
    key: ArrayLike,
    logits: ArrayLike,
    tau_f: ArrayLike,
    tau_b: ArrayLike,
    backward_noise: bool = False,
) -> Array:
    """Decoupled straight-through estimator for Bernoulli units (elementwise).

    Forward: `1[a/tau_f + L > 0]`, an exact sample of `Bernoulli(sigma(a/tau_f))`.
    Backward: `sigma'(a/tau_b) v / tau_b`; with `backward_noise=True`, `sigma'(a/tau_b + L) v /
    tau_b` with the forward's `L`.

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


def _n_temperatures(fn: Callable[..., Array]) -> int:
    """Temperature arguments after (key, logits): those without a default."""
    params = list(inspect.signature(fn).parameters.values())[2:]
    return sum(p.default is inspect.Parameter.empty for p in params)


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
    key: ArrayLike, logits: ArrayLike, tau_f: ArrayLike, tau_b: ArrayLike
) -> Array:
    """`decoupled_reinmax` on the logits (0, a), second component: a sample of
    `Bernoulli(sigma(a/tau_f))`."""
    return _on_zero_and_a(decoupled_reinmax, key, logits, tau_f=tau_f, tau_b=tau_b)


def gumbel_rao_bernoulli(key: ArrayLike, logits: ArrayLike, tau: ArrayLike, k: int = 10) -> Array:
    """`gumbel_rao` on the logits (0, a), second component: a sample of `Bernoulli(sigma(a))`
    whose backward averages k conditional Logistic draws."""
    return _on_zero_and_a(gumbel_rao, key, logits, tau=tau, k=k)


def sigmoid_relaxation(key: ArrayLike, logits: ArrayLike) -> Array:
    """`sigma(a)`: the relaxation's Bernoulli form (no sample; `key` unused)."""
    del key
    a = _as_logits(logits, categorical=False)
    return jax.nn.sigmoid(a.astype(_compute_dtype(a.dtype))).astype(a.dtype)


# ----------------------------------------------------------------------------------------------
# Samplers and given-sample forms. An estimator whose backward reads only the forward one-hot
# `D` (not the noise that drew it) can take `D` from any exact sampler of its forward law; the
# registry records that as data (`GivenSample`), and `Estimator.sampled` composes the two.

SAMPLERS = ("gumbel", "inverse_cdf")

# Up to this many classes the running sums of `sample_inverse_cdf` are unrolled (one fused
# elementwise pass); beyond, a `lax.scan` over the classes performs the same additions.
_UNROLL_CLASSES = 64


def _one_hot_first_max(scores: Array, dtype: jnp.dtype) -> Array:
    """`one_hot(argmax(scores))` over the last axis, equal to `_one_hot_argmax` wherever a row
    holds no NaN (ties to the lower index; a row with a NaN gives zeros).

    Computed with the classes on the leading axis, as a max and then the least index attaining
    it: two plain reductions that vectorise across rows. XLA's CPU argmax (a variadic reduce
    over the short class axis) evaluates its fused producer element by element, which for the
    Gumbel noise of 48,000 x 16 logits took about 30 ms against 16 ms for drawing the noise.
    """
    k = scores.shape[-1]
    s_Kx = jnp.moveaxis(scores, -1, 0)
    top = jnp.max(s_Kx, axis=0)
    index_Kx = lax.broadcasted_iota(jnp.int32, s_Kx.shape, 0)
    first = jnp.min(jnp.where(s_Kx == top, index_Kx, k), axis=0)
    return jax.nn.one_hot(first, k, dtype=dtype)


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
    d = _one_hot_first_max(scores, logits.dtype)
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


@dataclasses.dataclass(frozen=True)
class GivenSample:
    """An estimator's backward applied to a sample drawn elsewhere (registry data).

    Attributes:
      straight_through: `(d, logits, tau_f, tau_b) -> z` in the uniform (tau_f, tau_b) form:
        the value is `d` (a one-hot `(..., K)` sample, cast to the logits' dtype), the VJP is
        the estimator's backward at that sample. With `d` the estimator's own Gumbel-max
        sample (`sample_gumbel_max(key, l, forward_tau(tau_f, tau_b))`) it equals the
        estimator, value and gradient, exactly.
      forward_tau: `(tau_f, tau_b) -> tau`, the temperature of the law `Cat(softmax(l/tau))`
        that `d` must follow (e.g. `tau_f` for decoupled ST, 1 for ReinMax).
      voided_by: static options under which the backward reads the forward's noise, so that
        no given-sample form exists (e.g. `backward_noise` of decoupled ST).
    """

    straight_through: Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Array]
    forward_tau: Callable[[ArrayLike, ArrayLike], ArrayLike]
    voided_by: tuple[str, ...] = ()


def _cast_sample(d: ArrayLike, logits: Array) -> Array:
    return lax.stop_gradient(jnp.asarray(d).astype(logits.dtype))


def _softmax_st_given(d, logits, tau):
    """Value d; backward `J(softmax(l/tau)) v / tau` (decoupled ST's, with tau = tau_b)."""
    l, _ = _finite_rows(logits.astype(tau.dtype))
    return _softmax_st(_cast_sample(d, logits), l / tau)


def _decoupled_st_given(d, logits, tau_f, tau_b):
    logits, (_, tau_b) = _prepared(logits, tau_f=tau_f, tau_b=tau_b)
    return _softmax_st_given(d, logits, tau_b)


def _softmax_ste_given(d, logits, tau_f, tau_b):
    logits, (tau,) = _prepared(logits, tau=tau_f)
    return _softmax_st_given(d, logits, tau)


def _identity_ste_given(d, logits, tau_f, tau_b):
    logits, _ = _prepared(logits, tau=tau_f)
    return _identity_st(_cast_sample(d, logits), logits)


def _reinmax_given_core(d, logits, tau_f, tau_b):
    l, _ = _finite_rows(logits.astype(tau_f.dtype))
    p_b = lax.stop_gradient(jax.nn.softmax(l / tau_b, axis=-1))
    return _reinmax_st(_cast_sample(d, logits), l / tau_f, p_b)


def _decoupled_reinmax_given(d, logits, tau_f, tau_b):
    logits, (tau_f, tau_b) = _prepared(logits, tau_f=tau_f, tau_b=tau_b)
    return _reinmax_given_core(d, logits, tau_f, tau_b)


def _reinmax_given(d, logits, tau_f, tau_b):
    logits, (tau,) = _prepared(logits, tau=tau_b)
    return _reinmax_given_core(d, logits, jnp.ones_like(tau), tau)


def _tau_f(tau_f, tau_b):
    return tau_f


def _tau_one(tau_f, tau_b):
    return 1.0


# ----------------------------------------------------------------------------------------------
# Deterministic (evaluation) forms: the modes of the samples, with zero gradient.


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


# ----------------------------------------------------------------------------------------------
# The registry: every estimator once. Tasks, grid expansion, results and figures read it.

FORMS = ("categorical", "bernoulli")


@dataclasses.dataclass(frozen=True)
class Estimator:
    """A registry entry.

    Attributes:
      name: the name on the command line and in results files.
      categorical: the categorical function, `fn(key, logits, *temperatures, **options)`.
      bernoulli: its Bernoulli form, same signature.
      writes_tau_to: for a single-temperature estimator, the results fields (`"tau_f"`,
        `"tau_b"`) that record its `tau`, the first being the one its uniform form reads; the
        other field records 1.0. E.g. `("tau_f", "tau_b")` for Softmax STE (its tau acts in
        both passes), `("tau_b",)` for ReinMax (its forward samples at 1). Ignored otherwise.
      options: the static keyword options the functions take (e.g. `backward_noise`, `k`).
      discrete: False for a relaxation (a reference that does not sample).
      formula: forward and backward in one line, for the documentation.
      given_sample: the categorical backward applied to a sample drawn elsewhere
        (`GivenSample`), for an estimator whose backward needs only the forward one-hot `D`;
        None where it needs the noise (`st_gumbel_softmax`, `gumbel_rao`) or draws no sample.
      score_function: True for a score-function estimator (RLOO): its functions draw samples
        with no pathwise gradient, and the gradient comes from a surrogate over several
        samples that the task's loss builds; only tasks with `accepts_score_function` train it.
    """

    name: str
    categorical: Callable[..., Array]
    bernoulli: Callable[..., Array]
    writes_tau_to: tuple[str, ...] = ("tau_f", "tau_b")
    options: tuple[str, ...] = ()
    discrete: bool = True
    formula: str = ""
    given_sample: GivenSample | None = None
    score_function: bool = False

    def __post_init__(self):
        n = _n_temperatures(self.categorical)
        if n != _n_temperatures(self.bernoulli):
            raise ValueError(f"{self.name}: the two forms take different temperatures")
        if n == 1 and (not self.writes_tau_to or not set(self.writes_tau_to) <= {"tau_f", "tau_b"}):
            raise ValueError(
                f"{self.name}: writes_tau_to must name tau_f and/or tau_b, got {self.writes_tau_to}"
            )

    @property
    def n_temperatures(self) -> int:
        """0 (no temperature), 1 (`tau`) or 2 (`tau_f`, `tau_b`: a 2-D grid in sweeps)."""
        return _n_temperatures(self.categorical)

    @property
    def axes(self) -> tuple[str, ...]:
        """The results fields a sweep varies for this estimator: both, the one its tau is read
        from, or none."""
        return {2: ("tau_f", "tau_b"), 1: self.writes_tau_to[:1], 0: ()}[self.n_temperatures]

    def temperatures_of(self, tau: float) -> tuple[float, float]:
        """(tau_f, tau_b) that results record for a single-temperature value `tau`."""
        if self.n_temperatures == 0:
            return 1.0, 1.0
        tau_f, tau_b = (tau if f in self.writes_tau_to else 1.0 for f in ("tau_f", "tau_b"))
        return tau_f, tau_b

    def function(self, form: str) -> Callable[..., Array]:
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        return self.categorical if form == "categorical" else self.bernoulli

    def uniform(self, form: str = "categorical", **options) -> Uniform:
        """The estimator as `fn(key, logits, tau_f, tau_b) -> sample`, the form tasks call.

        A single-temperature estimator reads its tau from `writes_tau_to[0]`; an untempered one
        ignores both. Repeated calls return the same function object, so `jax.jit` caches keyed
        on it are reused.
        """
        unknown = set(options) - set(self.options)
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ValueError(
                f"{self.name} takes no option {', '.join(sorted(unknown))} (its options: "
                f"{allowed}); drop it or pick another estimator."
            )
        return _uniform(self, form, tuple(sorted(options.items())))

    def given_sample_form(self, **options) -> GivenSample | None:
        """The categorical given-sample form under these static options, or None where the
        backward needs the forward's noise (no form registered, or an option in `voided_by`
        set, e.g. `backward_noise=True`)."""
        given = self.given_sample
        if given is None or any(options.get(name) for name in given.voided_by):
            return None
        return given

    def sampled(self, sampler: str = "gumbel", form: str = "categorical", **options) -> Uniform:
        """The estimator as `fn(key, logits, tau_f, tau_b) -> sample`, its forward one-hot drawn
        by `sampler` (one of `SAMPLERS`).

        "gumbel": the estimator itself, the same values and gradients as `uniform(form)` (the
        same random stream); where a given-sample form exists it is computed as
        `straight_through(sample_gumbel_max(key, l, forward_tau(tau_f, tau_b)), l, tau_f, tau_b)`,
        equal bit for bit and faster on CPU (no variadic argmax).
        "inverse_cdf": `straight_through(sample_inverse_cdf(key, l, forward_tau(tau_f, tau_b)),
        l, tau_f, tau_b)`, the same law from one uniform per row: another random stream.

        Raises:
          ValueError: for an unknown sampler, or "inverse_cdf" with an estimator (or options,
            or the Bernoulli form) that has no given-sample form; the message names both.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        uniform = self.uniform(form, **options)  # validates form and options
        given = self.given_sample_form(**options) if form == "categorical" else None
        if given is None:
            if sampler == "gumbel":
                return uniform
            where = "its Bernoulli form" if form == "bernoulli" else "its backward"
            raise ValueError(
                f"estimator {self.name!r} cannot use sampler {sampler!r}: {where} needs the "
                "forward's Gumbel noise, not only the sample (no given-sample form); use "
                f"sampler 'gumbel', or one of {_given_sample_names()}."
            )
        return _sampled(self, sampler, tuple(sorted(options.items())))


def _given_sample_names() -> tuple[str, ...]:
    return tuple(e.name for e in REGISTRY if e.given_sample is not None)


@functools.cache
def _sampled(entry: Estimator, sampler: str, options: tuple) -> Uniform:
    given = entry.given_sample_form(**dict(options))
    draw = _SAMPLER_FUNCTIONS[sampler]

    def sampled(key, logits, tau_f, tau_b):
        d = draw(key, logits, given.forward_tau(tau_f, tau_b))
        return given.straight_through(d, logits, tau_f, tau_b)

    sampled.__name__ = sampled.__qualname__ = f"{entry.categorical.__name__}_{sampler}"
    sampled.__doc__ = (
        f"`{entry.categorical.__name__}` with its sample drawn by `{draw.__name__}`, as "
        "fn(key, logits, tau_f, tau_b)."
    )
    return sampled


@functools.cache
def _uniform(entry: Estimator, form: str, options: tuple) -> Uniform:
    fn = functools.partial(entry.function(form), **dict(options))
    n = entry.n_temperatures
    if n == 2:
        uniform = lambda key, logits, tau_f, tau_b: fn(key, logits, tau_f, tau_b)  # noqa: E731
    elif n == 1:
        slot = entry.writes_tau_to[0]

        def uniform(key, logits, tau_f, tau_b):
            return fn(key, logits, tau_f if slot == "tau_f" else tau_b)

    else:
        uniform = lambda key, logits, tau_f, tau_b: fn(key, logits)  # noqa: E731
    uniform.__name__ = uniform.__qualname__ = entry.function(form).__name__
    uniform.__doc__ = f"`{entry.function(form).__name__}` as fn(key, logits, tau_f, tau_b)."
    return uniform


class Registry:
    """Estimators by name, in registration order."""

    def __init__(self) -> None:
        self._entries: dict[str, Estimator] = {}

    def register(self, entry: Estimator) -> Estimator:
        """Adds `entry` under its name and returns it; a name already taken is a ValueError."""
        if entry.name in self._entries:
            raise ValueError(f"an estimator named {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self[name]  # noqa: B018 (raises the usual error for an unknown name)
        del self._entries[name]

    @contextlib.contextmanager
    def scoped(self, entry: Estimator) -> Iterator[Estimator]:
        """Registers `entry` for the duration of a `with` block (tests, one-off experiments)."""
        self.register(entry)
        try:
            yield entry
        finally:
            self._entries.pop(entry.name, None)

    def __getitem__(self, name: str) -> Estimator:
        if name not in self._entries:
            raise ValueError(f"unknown estimator {name!r}; expected one of {self.names()}.")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Estimator]:
        return iter(tuple(self._entries.values()))

    def names(self, discrete: bool | None = None) -> tuple[str, ...]:
        """Registered names; `discrete=True` only sampling estimators, False only relaxations."""
        return tuple(e.name for e in self if discrete is None or e.discrete == discrete)


REGISTRY = Registry()
register = REGISTRY.register

register(
    Estimator(
        "decoupled_st",
        decoupled_st,
        decoupled_st_bernoulli,
        options=("backward_noise",),
        formula="one_hot(argmax(l/tau_f + g)); J(softmax(l/tau_b)) v / tau_b",
        given_sample=GivenSample(_decoupled_st_given, _tau_f, voided_by=("backward_noise",)),
    )
)
register(
    Estimator(
        "softmax_ste",
        softmax_ste,
        sigmoid_ste,
        formula="one_hot(argmax(l/tau + g)); J(softmax(l/tau)) v / tau",
        given_sample=GivenSample(_softmax_ste_given, _tau_f),
    )
)
register(
    Estimator(
        "st_gumbel_softmax",
        st_gumbel_softmax,
        st_gumbel_sigmoid,
        formula="one_hot(argmax(l + g)); J(softmax((l + g)/tau)) v / tau",
    )
)
register(
    Estimator(
        "identity_ste",
        identity_ste,
        identity_ste_bernoulli,
        formula="one_hot(argmax(l/tau + g)); v",
        given_sample=GivenSample(_identity_ste_given, _tau_f),
    )
)
register(
    Estimator(
        "reinmax",
        reinmax,
        reinmax_bernoulli,
        writes_tau_to=("tau_b",),
        formula="D = one_hot(argmax(l + g)); 2 J((softmax(l/tau) + D)/2) v - J(softmax(l)) v / 2",
        given_sample=GivenSample(_reinmax_given, _tau_one),
    )
)
register(
    Estimator(
        "decoupled_reinmax",
        decoupled_reinmax,
        decoupled_reinmax_bernoulli,
        formula=(
            "D = one_hot(argmax(l/tau_f + g)); "
            "(2 J((softmax(l/tau_b) + D)/2) v - J(softmax(l/tau_f)) v / 2) / tau_f"
        ),
        given_sample=GivenSample(_decoupled_reinmax_given, _tau_f),
    )
)
register(
    Estimator(
        "gumbel_rao",
        gumbel_rao,
        gumbel_rao_bernoulli,
        writes_tau_to=("tau_b",),
        options=("k",),
        formula=(
            "one_hot(argmax(l + g)); (1/k) sum_i J(softmax((l + h_i)/tau)) v / tau, "
            "h_i Gumbel given the sampled argmax"
        ),
    )
)
register(
    Estimator(
        "softmax_relaxation",
        softmax_relaxation,
        sigmoid_relaxation,
        discrete=False,
        formula="softmax(l) (no sample); J(softmax(l)) v",
    )
)

# The estimator this project studies: paired tables compare every other estimator with it.
REFERENCE = "decoupled_st"

# The built-in functions by form (tuples fixed at import; `REGISTRY` is the live list).
CATEGORICAL = tuple(e.categorical.__name__ for e in REGISTRY if e.discrete)
BERNOULLI = tuple(e.bernoulli.__name__ for e in REGISTRY if e.discrete)
NAMES = CATEGORICAL + BERNOULLI


def lookup(name: str) -> tuple[Estimator, str]:
    """(entry, form) of a registry name (categorical form) or of a Bernoulli function's name
    (e.g. "sigmoid_ste" -> the softmax_ste entry, "bernoulli")."""
    if name in REGISTRY:
        return REGISTRY[name], "categorical"
    for entry in REGISTRY:
        if entry.bernoulli.__name__ == name:
            return entry, "bernoulli"
    raise ValueError(
        f"unknown estimator {name!r}; expected one of {REGISTRY.names()} "
        f"(or a Bernoulli form: {tuple(e.bernoulli.__name__ for e in REGISTRY)})."
    )


def get(name: str, form: str | None = None, **options) -> Uniform:
    """The estimator `name` as `fn(key, logits, tau_f, tau_b) -> sample`.

    `name` is a registry name or a Bernoulli function's name; `form` ("categorical" or
    "bernoulli") overrides the form the name implies. Single-temperature estimators read their
    `tau` from the field in `writes_tau_to[0]`; options (e.g. `backward_noise=True`, `k=20`) go
    to the function and must be ones it takes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax import estimators
        >>> fn = estimators.get("reinmax")  # fn(key, logits, tau_f, tau_b); ReinMax reads tau_b
        >>> fn(jax.random.key(0), jnp.zeros((2, 3)), 1.0, 0.5).shape
        (2, 3)
        >>> estimators.REGISTRY["reinmax"].temperatures_of(0.5)  # recorded (tau_f, tau_b)
        (1.0, 0.5)
    """
    entry, implied = lookup(name)
    return entry.uniform(form or implied, **options)


def bernoulli_name(name: str) -> str:
    """The Bernoulli function's name of an estimator: `"decoupled_st"` ->
    `"decoupled_st_bernoulli"`, `"softmax_ste"` -> `"sigmoid_ste"`; a Bernoulli name is returned
    unchanged."""
    return lookup(name)[0].bernoulli.__name__
