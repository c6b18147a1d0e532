"""Input checks shared by every estimator: logits, temperatures and non-finite rows.

Why a module of its own: every estimator validates its inputs the same way (one error message
per mistake), and the sweep engine validates a whole grid of temperatures with the same rule
(`check_temperatures`) before anything is traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

Array = jax.Array

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


def _prepared(logits: ArrayLike, **temperatures: ArrayLike) -> tuple[Array, list[Array]]:
    """Checked categorical logits and temperatures in the compute dtype."""
    logits = _as_logits(logits, categorical=True)
    return logits, [_as_temperature(t, n, logits) for n, t in temperatures.items()]


def _require_tau_b(name: str, tau_b: ArrayLike | None, single: str) -> ArrayLike:
    """A two-temperature estimator called without `tau_b`: say what it needs, not a bare
    TypeError about a missing argument (there is no default: either choice would be silent)."""
    if tau_b is None:
        raise TypeError(
            f"{name} needs both temperatures: tau_f (the forward sample's) and tau_b (the "
            f"backward surrogate's), e.g. {name}(key, logits, tau_f=1.0, tau_b=0.5); for one "
            f"temperature use {single}(key, logits, tau)."
        )
    return tau_b
