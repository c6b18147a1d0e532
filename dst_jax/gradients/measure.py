"""The estimators' sampled gradients over a temperature grid and their quality against the exact
references, for S inputs in one compiled program per estimator.

An estimator's gradient is one draw::

    g_n = grad_l f(est(key_n, l, tau_f, tau_b))                      (L, C)

and the quality of N draws against a reference g is measured, with norms over all L*C entries, by::

    mean     = (1/N) sum_n g_n
    bias     = |mean - g| / |g|                                      relative bias
    spread   = sqrt((1/N) sum_n |g_n - mean|^2) / |g|                relative spread
    cosine   = <mean, g> / (|mean| |g|)

Two references per configuration: `tau = 1` (the model's distribution) and `tau = tau_f` (the
distribution the estimator's forward pass samples; see `Estimator.forward_temperature`);
`exact` computes both.

Score-function estimators (`Estimator.score_function`, RLOO) have no pathwise gradient: a draw
is `estimators_recent.rloo_gradient(key_n, l, f, S)`, the leave-one-out REINFORCE estimate from
S samples of q = softmax(l), unbiased for the `tau1` reference (`claims.noise_ratio` reads its
bias against its sampling error).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from dst_jax import estimators as estimator_lib
from dst_jax import estimators_recent
from dst_jax.estimators import DEFAULT_TAUS, Estimator
from dst_jax.gradients.exact import _shape_of, exact_gradient, expectation, tabulate, tabulated

__all__ = [
    "METRICS",
    "REFERENCES",
    "Objective",
    "configs",
    "estimator_gradients",
    "gradient_quality",
    "grid_quality",
    "quality",
]

Array = jax.Array
# A per-code objective: objective(theta, z_LxC, x) -> scalar, e.g. the summed pixel BCE of the
# decoder with parameters theta at code z against the image x.
Objective = Callable[[Any, Array, Any], Array]

METRICS = ("bias", "spread", "cosine")
REFERENCES = ("tau1", "tau_f")

# ----------------------------------------------------------------------------------------------
# Sampled gradients and their quality.


def _draw_gradients(sample, keys_N, l_LxC, f, tau_f, tau_b, score_samples: int = 0) -> Array:
    """grad_l f(sample(key_n, l, tau_f, tau_b)) for every key; (N, L, C). With
    `score_samples = S > 0` a draw is instead RLOO's estimate from S samples of softmax(l)."""
    if score_samples:
        one = lambda key: estimators_recent.rloo_gradient(key, l_LxC, f, score_samples)  # noqa: E731
        return jax.vmap(one)(keys_N)
    one = lambda key: jax.grad(lambda l: f(sample(key, l, tau_f, tau_b)))(l_LxC)  # noqa: E731
    return jax.vmap(one)(keys_N)


def _over_configs(fn: Callable[..., Any], xs: tuple[Array, ...], chunk_size: int | None):
    """fn vmapped over the leading axis of every array in xs, `chunk_size` configs at a time.

    `lax.map(..., batch_size=k)` vmaps within a chunk and loops over chunks, so memory is
    bounded by one chunk; the result does not depend on `chunk_size`.
    """
    n = xs[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return jax.vmap(fn)(*xs)
    return lax.map(lambda args: fn(*args), xs, batch_size=chunk_size)


def estimator_gradients(
    sample: estimator_lib.Uniform,
    key: Array,
    l_LxC: Array,
    f: Callable[[Array], Array],
    taus_f_K: ArrayLike,
    taus_b_K: ArrayLike,
    n_draws: int,
    chunk_size: int | None = None,
    score_samples: int = 0,
) -> Array:
    """N sampled gradients at each of K (tau_f, tau_b) configurations; (K, N, L, C).

    grads[k, n] = grad_l f(sample(key_n, l, tau_f[k], tau_b[k])), key_n = split(key, N)[n]:
    every configuration sees the same N keys (common random numbers, so configurations are
    compared on the same noise, and config k of a grid equals config k computed alone).
    `sample` is an estimator's uniform form (`Estimator.uniform("categorical")`); the grid is
    one program, vmapped over configurations (in chunks of `chunk_size`) and over draws.
    `score_samples = S > 0`: a score-function estimator's draws (RLOO over S samples).
    """
    keys_N = jax.random.split(key, n_draws)
    taus = (jnp.asarray(taus_f_K), jnp.asarray(taus_b_K))
    one = lambda tf, tb: _draw_gradients(sample, keys_N, l_LxC, f, tf, tb, score_samples)  # noqa: E731
    return _over_configs(one, taus, chunk_size)


def quality(grads_NxLxC: Array, g_LxC: Array) -> dict[str, Array]:
    """Relative bias, relative spread and cosine of N draws against the reference g.

    With mean = (1/N) sum_n g_n and norms over every non-draw axis:
    `bias = |mean - g| / |g|`; `spread = sqrt((1/N) sum_n |g_n - mean|^2) / |g|`;
    `cosine = <mean / |mean|, g / |g|>`. Scalars. All three are NaN where g = 0 (a relative error
    to a zero gradient is undefined), and the cosine is NaN where mean = 0.
    """
    axes = tuple(range(1, grads_NxLxC.ndim))
    mean_LxC = jnp.mean(grads_NxLxC, axis=0)
    g_norm = jnp.linalg.norm(g_LxC)
    mean_norm = jnp.linalg.norm(mean_LxC)
    defined = g_norm > 0
    # Dividing before multiplying keeps the cosine finite when both norms are tiny, as they are
    # for a nearly deterministic q.
    safe_g = jnp.where(defined, g_norm, 1.0)
    safe_mean = jnp.where(mean_norm > 0, mean_norm, 1.0)
    cosine = jnp.vdot(mean_LxC / safe_mean, g_LxC / safe_g)
    spread_sq = jnp.mean(jnp.sum((grads_NxLxC - mean_LxC) ** 2, axis=axes))
    nan = jnp.asarray(jnp.nan, g_norm.dtype)
    return {
        "bias": jnp.where(defined, jnp.linalg.norm(mean_LxC - g_LxC) / safe_g, nan),
        "spread": jnp.where(defined, jnp.sqrt(spread_sq) / safe_g, nan),
        "cosine": jnp.where(defined & (mean_norm > 0), cosine, nan),
    }


def grid_quality(
    sample: estimator_lib.Uniform,
    key: Array,
    l_LxC: Array,
    f: Callable[[Array], Array],
    f_Z: Array,
    taus_f_K: ArrayLike,
    taus_b_K: ArrayLike,
    taus_q_K: ArrayLike,
    n_draws: int,
    chunk_size: int | None = None,
    score_samples: int = 0,
) -> dict[str, dict[str, Array]]:
    """`quality` of each configuration's N draws against both references, for one input.

    Returns {"tau1": {metric: (K,)}, "tau_f": {metric: (K,)}}: the references are
    `exact_gradient(f_Z, l, 1)` and `exact_gradient(f_Z, l, taus_q[k])`, `taus_q[k]` the
    temperature the estimator's forward samples at (`Estimator.forward_temperature`). The draws
    are those of `estimator_gradients` (same keys; `score_samples` as there), reduced to metrics
    inside the chunk, so only (K,) arrays leave the program.
    """
    _shape_of(f_Z, l_LxC)
    keys_N = jax.random.split(key, n_draws)
    g1_LxC = exact_gradient(f_Z, l_LxC, 1.0)

    def one(tf, tb, tq):
        grads_NxLxC = _draw_gradients(sample, keys_N, l_LxC, f, tf, tb, score_samples)
        return {
            "tau1": quality(grads_NxLxC, g1_LxC),
            "tau_f": quality(grads_NxLxC, exact_gradient(f_Z, l_LxC, tq)),
        }

    taus = tuple(jnp.asarray(t, l_LxC.dtype) for t in (taus_f_K, taus_b_K, taus_q_K))
    return _over_configs(one, taus, chunk_size)


# ----------------------------------------------------------------------------------------------
# Grids of an estimator.


def configs(entry: Estimator, taus: Sequence[float]) -> dict[str, Any]:
    """The configurations of an estimator over the temperature axis `taus`.

    Two temperatures: the (tau_f, tau_b) grid, row-major (tau_f the row), shape (F, B) = (T, T).
    One: the axis, with (tau_f, tau_b) = `entry.temperatures_of(tau)`, shape (T,). None: one
    configuration, recorded at (1, 1), shape (). Returns flat float arrays "tau_f", "tau_b",
    "tau_q" (the sampling temperature, `Estimator.forward_temperature`) of length K, "tau" (the axis
    value; the tau_f of each config for two temperatures) and "shape".
    """
    taus = [float(t) for t in taus]
    estimator_lib.check_temperatures(taus=np.asarray(taus))
    if entry.n_temperatures == 2:
        tf_FxB, tb_FxB = np.meshgrid(taus, taus, indexing="ij")
        tf_K, tb_K, tau_K = tf_FxB.ravel(), tb_FxB.ravel(), tf_FxB.ravel()
        shape: tuple[int, ...] = tf_FxB.shape
    else:
        axis = taus if entry.n_temperatures == 1 else [1.0]
        tf_K, tb_K = np.array([entry.temperatures_of(t) for t in axis]).T
        tau_K = np.array(axis)
        shape = (len(taus),) if entry.n_temperatures == 1 else ()
    return {
        "tau_f": tf_K,
        "tau_b": tb_K,
        "tau_q": entry.forward_temperature(tf_K, tb_K),
        "tau": tau_K,
        "shape": shape,
    }


# ----------------------------------------------------------------------------------------------
# The protocol.


@functools.cache
def _tabulation_program(objective: Objective, n_latents: int, n_classes: int):
    def run(theta, x_S):
        # The codes in the model's own precision: float32 for a float32 decoder.
        floats = [t for t in jax.tree.leaves(theta) if jnp.issubdtype(t.dtype, jnp.floating)]
        dtype = jnp.result_type(*floats) if floats else jnp.float32

        def one(x):
            return tabulate(lambda z: objective(theta, z, x), n_latents, n_classes, dtype)

        return lax.map(one, x_S)

    return jax.jit(run)


@functools.cache
def _grid_program(
    sample,
    objective: Objective,
    n_draws: int,
    chunk_size: int | None,
    direct: bool,
    score_samples: int = 0,
):
    def run(theta, keys_S, x_S, l_SxLxC, f_SxZ, df_SxZxLxC, tf_K, tb_K, tq_K):
        def one(args):
            key, x, l_LxC, f_Z, df_ZxLxC = args
            # Cast one image's tables at a time: S float64 copies would double the memory.
            f_Z, df_ZxLxC = f_Z.astype(l_LxC.dtype), df_ZxLxC.astype(l_LxC.dtype)
            if direct:
                f = lambda z: objective(theta, z, x)  # noqa: E731
            else:
                f = tabulated(f_Z, df_ZxLxC)
            return grid_quality(
                sample, key, l_LxC, f, f_Z, tf_K, tb_K, tq_K, n_draws, chunk_size, score_samples
            )

        return lax.map(one, (keys_S, x_S, l_SxLxC, f_SxZ, df_SxZxLxC))

    return jax.jit(run)


def gradient_quality(
    objective: Objective,
    theta: Any,
    x_S: Any,
    l_SxLxC: ArrayLike,
    key: Array,
    *,
    entries: Iterable[Estimator] | None = None,
    taus: Sequence[float] = DEFAULT_TAUS,
    n_draws: int = 1024,
    chunk_size: int | None = None,
    direct: bool = False,
    score_samples: int = 4,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """The gradient-quality protocol for S inputs of a model given by its per-code objective.

    `objective(theta, z_LxC, x) -> scalar` is f for one input x (e.g. the decoder's summed BCE
    at code z against image x); `l_SxLxC` the encoder logits of the S inputs (x_S has S rows).
    For each input: f and grad_z f at every code (`tabulate`), the exact references, and for
    each estimator in `entries` (default: every registered discrete estimator) its grid over
    `taus` (`configs`) as one vmapped program: N draws per configuration, reduced to
    `quality` against both references. Input s uses the key `fold_in(key, s)` for every
    estimator, so estimators and configurations are compared on the same noise.

    `direct=True` differentiates through `objective` in every draw instead of the tables (same
    numbers, slower; a check of the tables). A score-function entry (RLOO) draws each gradient
    from `score_samples` samples (S >= 2). `progress(name, seconds)` is called after each
    estimator.

    Returns, as numpy arrays, {"estimators": {name: {"tau_f", "tau_b", "tau_q", "tau": (K,),
    "shape": the grid's shape, "per_image": {reference: {metric: (S, K)}}}}, "expected_f": the
    exact `F_1(l)` of each input, (S,)}.
    """
    l_SxLxC = jnp.asarray(l_SxLxC)
    n_images, n_latents, n_classes = l_SxLxC.shape
    if not (isinstance(score_samples, int) and score_samples >= 2):
        raise ValueError(f"score_samples must be an int >= 2 (RLOO), got {score_samples!r}")
    if entries is None:
        entries = [e for e in estimator_lib.REGISTRY if e.discrete]
    entries = list(entries)
    for entry in entries:
        if not entry.discrete:
            raise ValueError(
                f"{entry.name} is a relaxation (its output is not one-hot): the enumerated "
                "objective is defined at codes only; leave it out"
            )
    f_SxZ, df_SxZxLxC = _tabulation_program(objective, n_latents, n_classes)(theta, x_S)
    keys_S = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(n_images))
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        t0 = time.perf_counter()
        grid = configs(entry, taus)
        program = _grid_program(
            entry.uniform("categorical"),
            objective,
            n_draws,
            chunk_size,
            direct,
            score_samples if entry.score_function else 0,
        )
        metrics = program(
            theta,
            keys_S,
            x_S,
            l_SxLxC,
            f_SxZ,
            df_SxZxLxC,
            *(jnp.asarray(grid[k], l_SxLxC.dtype) for k in ("tau_f", "tau_b", "tau_q")),
        )
        out[entry.name] = {**grid, "per_image": jax.tree.map(np.asarray, metrics)}
        if progress is not None:
            progress(entry.name, time.perf_counter() - t0)
    expected_S = jax.vmap(expectation)(f_SxZ.astype(l_SxLxC.dtype), l_SxLxC)
    return {"estimators": out, "expected_f": np.asarray(expected_S)}
