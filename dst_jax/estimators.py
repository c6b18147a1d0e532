"""Straight-through estimators for categorical and Bernoulli units (DESIGN.md section 1).

Each estimator returns a hard sample in the forward pass and, in the backward pass, the Jacobian of
a smooth surrogate in place of the (zero) Jacobian of the sample. Decoupled ST gives the two
passes their own temperatures: `tau_f` sets how random the forward sample is, `tau_b` how the
backward gradient spreads across categories.

Notation: `l` logits (categories on the last axis), `g` standard Gumbel noise of `l`'s shape,
`L = g1 - g0` standard Logistic noise, `sigma` the logistic sigmoid,
`J_softmax(u) = diag(softmax(u)) - softmax(u) softmax(u)^T`.

    function                              forward value               backward dz/dl
    decoupled_st(key, l, tau_f, tau_b)    one_hot(argmax(l/tau_f+g))  J_softmax(l/tau_b) / tau_b
      ... backward_noise=True             same                        J_softmax(l/tau_b+g) / tau_b
    softmax_ste(key, l, tau)              one_hot(argmax(l/tau+g))    J_softmax(l/tau) / tau
    st_gumbel_softmax(key, l, tau)        one_hot(argmax(l+g))        J_softmax((l+g)/tau) / tau
    identity_ste(key, l, tau)             one_hot(argmax(l/tau+g))    identity
    decoupled_st_bernoulli(key, a, tau_f, tau_b)
                                          1[a/tau_f + L > 0]          sigma'(a/tau_b) / tau_b
      ... backward_noise=True             same                        sigma'(a/tau_b + L) / tau_b
    sigmoid_ste(key, a, tau)              1[a/tau + L > 0]            sigma'(a/tau) / tau
    st_gumbel_sigmoid(key, a, tau)        1[a + L > 0]                sigma'((a + L)/tau) / tau
    identity_ste_bernoulli(key, a, tau)   1[a/tau + L > 0]            identity

The forward values are exact samples: `Cat(softmax(l/tau_f))` (Gumbel-max) and
`Bernoulli(sigma(a/tau_f))`; `st_gumbel_*` sample at temperature 1 whatever `tau`.

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
  about 32, at twice the random bits.
- Logistic noise for Bernoulli units is `L = g[..., 1] - g[..., 0]` with `g` the Gumbel draw of
  shape `a.shape + (2,)`, which is exactly the draw a categorical estimator makes for logits
  `[0, a]` of that shape under the same key. So with the same key, a Bernoulli estimator's sample
  equals the categorical one's class-1 entry bit for bit (the test `a/tau_f + g1 > g0` is the
  same float comparison the categorical argmax makes), and its gradient equals the categorical
  gradient w.r.t. `a` for a cotangent on class 1. The price is two Gumbels per unit instead of
  one uniform.
- Temperatures are ordinary array arguments (scalars, or arrays that broadcast to the logits'
  shape), so a grid of temperatures is `jax.vmap`. Their gradient is zero: they enter through
  `lax.stop_gradient`. The key never enters a `custom_vjp`: noise is drawn outside it, so keys of
  either kind (`jax.random.key` or raw `jax.random.PRNGKey`) get the usual float0 cotangent.
- Validation. A concrete temperature that is not a positive finite number raises a `ValueError`
  naming the argument. Under `jit`/`vmap` temperatures are tracers and the check is skipped (a
  traced check would need `checkify` in every caller); the grid-level guard is
  `check_temperatures`, which the sweep engine calls on the concrete grid before compiling.
- `backward_noise` is a static Python bool.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

__all__ = [
    "BERNOULLI",
    "CATEGORICAL",
    "FAMILIES",
    "NAMES",
    "argmax_one_hot",
    "bernoulli_mode",
    "bernoulli_name",
    "check_temperatures",
    "decoupled_st",
    "decoupled_st_bernoulli",
    "get",
    "identity_ste",
    "identity_ste_bernoulli",
    "sigmoid_ste",
    "softmax_ste",
    "st_gumbel_sigmoid",
    "st_gumbel_softmax",
]

Array = jax.Array
# The uniform form used by the sweep engine: (key, logits, tau_f, tau_b) -> sample.
Estimator = Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Array]

# The four estimator families, by their categorical names; `BERNOULLI[i]` is the Bernoulli
# counterpart of `CATEGORICAL[i]`.
FAMILIES = ("decoupled_st", "softmax_ste", "st_gumbel_softmax", "identity_ste")
CATEGORICAL = FAMILIES
BERNOULLI = ("decoupled_st_bernoulli", "sigmoid_ste", "st_gumbel_sigmoid", "identity_ste_bernoulli")
NAMES = CATEGORICAL + BERNOULLI
_BERNOULLI_OF = dict(zip(CATEGORICAL, BERNOULLI, strict=True))


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


def _check_concrete(name: str, value: ArrayLike) -> None:
    """Raises ValueError unless every entry of the concrete `value` is positive and finite."""
    v = np.asarray(value)
    if v.dtype.kind not in "biuf" and v.dtype.name not in ("bfloat16", "float16"):
        raise ValueError(f"{name} must be a real number, got {value!r} (dtype {v.dtype}).")
    v = v.astype(np.float64)
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
        if v.ndim == 0:
            raise ValueError(f"{name} must be a positive finite number, got {v.item()!r}.")
        raise ValueError(
            f"{name} must hold positive finite numbers, got {v[bad][:5].tolist()} "
            f"({int(bad.sum())} bad of {v.size}, array shape {v.shape})."
        )


def check_temperatures(**temperatures: ArrayLike) -> None:
    """Validates concrete temperatures, e.g. a sweep grid, before anything is traced.

    Call it outside `jit`/`vmap`, where the estimators themselves cannot check their traced
    temperatures: `check_temperatures(tau_f=grid_f, tau_b=grid_b)`.

    Raises:
      ValueError: naming the argument, if any entry is <= 0, NaN or infinite, or if a value is a
        tracer (it must be called on concrete arrays).
    """
    for name, value in temperatures.items():
        if isinstance(value, jax.core.Tracer):
            raise ValueError(
                f"check_temperatures needs concrete values but {name} is traced; call it outside "
                "jit/vmap, on the grid of temperatures before it enters the compiled function."
            )
        _check_concrete(name, value)


def _as_temperature(tau: ArrayLike, name: str, logits: Array) -> Array:
    if not isinstance(tau, jax.core.Tracer):
        _check_concrete(name, tau)
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


# ----------------------------------------------------------------------------------------------
# Noise. Tests rebuild the analytic Jacobians from these exact draws.


def _gumbel_noise(key: ArrayLike, shape: tuple[int, ...], dtype: jnp.dtype) -> Array:
    """Standard Gumbel noise, untruncated up to about 32 (see the module docstring)."""
    return jax.random.gumbel(key, shape, dtype=dtype, mode="high")


def _gumbel_pair(key: ArrayLike, shape: tuple[int, ...], dtype: jnp.dtype) -> tuple[Array, Array]:
    """(g0, g1): the Gumbel draw a categorical estimator makes for logits `[0, a]`, split."""
    g = _gumbel_noise(key, (*shape, 2), dtype)
    return g[..., 0], g[..., 1]


def _logistic_noise(key: ArrayLike, shape: tuple[int, ...], dtype: jnp.dtype) -> Array:
    """Standard Logistic noise `L = g1 - g0`, as used by the Bernoulli estimators."""
    g0, g1 = _gumbel_pair(key, shape, dtype)
    return g1 - g0


# ----------------------------------------------------------------------------------------------
# Straight-through cores: the value is `z`; the backward pass is that of a surrogate of `s`.
# The hard value is computed outside (argmax and comparisons have no gradient), so each core
# is "return z" with a custom backward, and the 1/tau factors come from autodiff of `s`.


@jax.custom_vjp
def _softmax_st(z: Array, s: Array) -> Array:
    """Value z; backward v -> J_softmax(s) v = p * (v - <p, v>), p = softmax(s), never K x K."""
    return z


def _softmax_st_fwd(z: Array, s: Array) -> tuple[Array, Array]:
    return z, jax.nn.softmax(s, axis=-1)


def _softmax_st_bwd(p: Array, v: Array) -> tuple[None, Array]:
    v = v.astype(p.dtype)
    return None, p * (v - jnp.sum(p * v, axis=-1, keepdims=True))


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


def _one_hot_argmax(scores: Array, dtype: jnp.dtype) -> Array:
    return jax.nn.one_hot(jnp.argmax(scores, axis=-1), scores.shape[-1], dtype=dtype)


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

    Forward: `one_hot(argmax(l/tau_f + g))`, an exact sample of `Cat(softmax(l/tau_f))`.
    Backward: dz/dl = `J_softmax(l/tau_b) / tau_b`; with `backward_noise=True`,
    `J_softmax(l/tau_b + g) / tau_b` with the forward's `g`.

    Args:
      key: PRNG key (typed or raw).
      logits: `(..., K)` float array.
      tau_f, tau_b: positive forward and backward temperatures (scalars or broadcastable).
      backward_noise: static; whether the backward surrogate sees the forward's Gumbel noise.

    Returns:
      `(..., K)` one-hot sample, dtype of `logits`.
    """
    logits = _as_logits(logits, categorical=True)
    tau_f = _as_temperature(tau_f, "tau_f", logits)
    tau_b = _as_temperature(tau_b, "tau_b", logits)
    return _decoupled_st(key, logits, tau_f, tau_b, backward_noise)


def _decoupled_st(
    key: ArrayLike, logits: Array, tau_f: Array, tau_b: Array, backward_noise: bool
) -> Array:
    l = logits.astype(tau_f.dtype)
    g = _gumbel_noise(key, l.shape, l.dtype)
    z = _one_hot_argmax(l / tau_f + g, logits.dtype)
    s = l / tau_b + g if backward_noise else l / tau_b
    return _softmax_st(z, s)


def softmax_ste(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Softmax straight-through: `decoupled_st(key, l, tau, tau)`, value and gradient.

    Forward `one_hot(argmax(l/tau + g))`; backward `J_softmax(l/tau) / tau`. Shapes as
    `decoupled_st`.
    """
    logits = _as_logits(logits, categorical=True)
    tau = _as_temperature(tau, "tau", logits)
    return _decoupled_st(key, logits, tau, tau, False)


def st_gumbel_softmax(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Hard (straight-through) Gumbel-softmax, as PyTorch's `gumbel_softmax(hard=True)`.

    Forward `one_hot(argmax(l + g))`, a sample of `Cat(softmax(l))` whatever `tau`;
    backward `J_softmax((l + g)/tau) / tau`. Shapes as `decoupled_st`.
    """
    logits = _as_logits(logits, categorical=True)
    tau = _as_temperature(tau, "tau", logits)
    l = logits.astype(tau.dtype)
    y = l + _gumbel_noise(key, l.shape, l.dtype)
    return _softmax_st(_one_hot_argmax(y, logits.dtype), y / tau)


def identity_ste(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Identity straight-through: forward `one_hot(argmax(l/tau + g))`, backward dz/dl = I.

    Shapes as `decoupled_st`.
    """
    logits = _as_logits(logits, categorical=True)
    tau = _as_temperature(tau, "tau", logits)
    l = logits.astype(tau.dtype)
    z = _one_hot_argmax(l / tau + _gumbel_noise(key, l.shape, l.dtype), logits.dtype)
    return _identity_st(z, logits)


# ----------------------------------------------------------------------------------------------
# Bernoulli estimators. Shapes: logits (...) -> {0, 1} values (...). The sample tests
# `a/tau + g1 > g0`, i.e. `a/tau + L > 0`, written as the categorical's comparison on [0, a].


def decoupled_st_bernoulli(
    key: ArrayLike,
    logits: ArrayLike,
    tau_f: ArrayLike,
    tau_b: ArrayLike,
    backward_noise: bool = False,
) -> Array:
    """Decoupled straight-through estimator for Bernoulli units (elementwise).

    Forward: `1[a/tau_f + L > 0]`, an exact sample of `Bernoulli(sigma(a/tau_f))`.
    Backward: dz/da = `sigma'(a/tau_b) / tau_b`; with `backward_noise=True`,
    `sigma'(a/tau_b + L) / tau_b` with the forward's `L`.

    Args:
      key: PRNG key (typed or raw).
      logits: the logits `a`, a float array of any shape.
      tau_f, tau_b: positive forward and backward temperatures (scalars or broadcastable).
      backward_noise: static; whether the backward surrogate sees the forward's Logistic noise.

    Returns:
      `{0, 1}` sample of `a`'s shape and dtype.
    """
    logits = _as_logits(logits, categorical=False)
    tau_f = _as_temperature(tau_f, "tau_f", logits)
    tau_b = _as_temperature(tau_b, "tau_b", logits)
    return _decoupled_st_bernoulli(key, logits, tau_f, tau_b, backward_noise)


def _decoupled_st_bernoulli(
    key: ArrayLike, logits: Array, tau_f: Array, tau_b: Array, backward_noise: bool
) -> Array:
    a = logits.astype(tau_f.dtype)
    g0, g1 = _gumbel_pair(key, a.shape, a.dtype)
    z = (a / tau_f + g1 > g0).astype(logits.dtype)
    s = a / tau_b + (g1 - g0) if backward_noise else a / tau_b
    return _sigmoid_st(z, s)


def sigmoid_ste(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Sigmoid straight-through: `decoupled_st_bernoulli(key, a, tau, tau)`.

    Forward `1[a/tau + L > 0]`; backward `sigma'(a/tau) / tau`. Shapes as
    `decoupled_st_bernoulli`.
    """
    logits = _as_logits(logits, categorical=False)
    tau = _as_temperature(tau, "tau", logits)
    return _decoupled_st_bernoulli(key, logits, tau, tau, False)


def st_gumbel_sigmoid(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Hard binary concrete: forward `1[a + L > 0]` (whatever `tau`), backward
    `sigma'((a + L)/tau) / tau`. Shapes as `decoupled_st_bernoulli`.
    """
    logits = _as_logits(logits, categorical=False)
    tau = _as_temperature(tau, "tau", logits)
    a = logits.astype(tau.dtype)
    g0, g1 = _gumbel_pair(key, a.shape, a.dtype)
    z = (a + g1 > g0).astype(logits.dtype)
    return _sigmoid_st(z, (a + (g1 - g0)) / tau)


def identity_ste_bernoulli(key: ArrayLike, logits: ArrayLike, tau: ArrayLike) -> Array:
    """Identity straight-through for Bernoulli units: forward `1[a/tau + L > 0]`,
    backward dz/da = 1. Shapes as `decoupled_st_bernoulli`.
    """
    logits = _as_logits(logits, categorical=False)
    tau = _as_temperature(tau, "tau", logits)
    a = logits.astype(tau.dtype)
    g0, g1 = _gumbel_pair(key, a.shape, a.dtype)
    z = (a / tau + g1 > g0).astype(logits.dtype)
    return _identity_st(z, logits)


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
# Lookup by name.


def bernoulli_name(name: str) -> str:
    """The Bernoulli estimator of a family: `"decoupled_st"` -> `"decoupled_st_bernoulli"`,
    `"softmax_ste"` -> `"sigmoid_ste"`, `"st_gumbel_softmax"` -> `"st_gumbel_sigmoid"`,
    `"identity_ste"` -> `"identity_ste_bernoulli"`. A Bernoulli name is returned unchanged.
    """
    if name in BERNOULLI:
        return name
    if name not in _BERNOULLI_OF:
        raise ValueError(f"unknown estimator {name!r}; expected one of {NAMES}.")
    return _BERNOULLI_OF[name]


_FUNCTIONS: dict[str, Callable[..., Array]] = {
    "decoupled_st": decoupled_st,
    "softmax_ste": softmax_ste,
    "st_gumbel_softmax": st_gumbel_softmax,
    "identity_ste": identity_ste,
    "decoupled_st_bernoulli": decoupled_st_bernoulli,
    "sigmoid_ste": sigmoid_ste,
    "st_gumbel_sigmoid": st_gumbel_sigmoid,
    "identity_ste_bernoulli": identity_ste_bernoulli,
}
_DECOUPLED = ("decoupled_st", "decoupled_st_bernoulli")


def get(name: str, *, backward_noise: bool = False) -> Estimator:
    """The estimator `name` in the uniform form `fn(key, logits, tau_f, tau_b) -> sample`.

    Single-temperature estimators use `tau_f` as their `tau` and ignore `tau_b`.
    `backward_noise` applies to the two decoupled estimators only. Repeated calls return the
    same function object, so `jax.jit` caches keyed on it are reused.
    """
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown estimator {name!r}; expected one of {NAMES}.")
    if backward_noise and name not in _DECOUPLED:
        raise ValueError(
            f"backward_noise applies to {_DECOUPLED} only, not to {name!r}; "
            "drop the argument or pick a decoupled estimator."
        )
    return _uniform(name, bool(backward_noise))


@functools.cache
def _uniform(name: str, backward_noise: bool) -> Estimator:
    fn = _FUNCTIONS[name]
    if name in _DECOUPLED:
        return functools.partial(fn, backward_noise=backward_noise)

    def uniform(key, logits, tau_f, tau_b):
        del tau_b  # a single-temperature estimator: tau = tau_f
        return fn(key, logits, tau_f)

    uniform.__name__ = uniform.__qualname__ = name
    uniform.__doc__ = f"`{name}(key, logits, tau=tau_f)` in the uniform form; tau_b is ignored."
    return uniform
