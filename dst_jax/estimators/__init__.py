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

`REGISTRY` lists every estimator once with its facts (`Estimator`: categorical and Bernoulli
functions, the temperatures it reads, the one that sets its forward sample, its options and their
defaults, whether it samples, whether it is a score-function estimator); the tasks, the sweep
grid, results, figures and the gradient analysis read it, so a new estimator is one function, one
line in `catalog.py` and its tests. The newest studies' estimators (`zgr`, `mve`, `gapped_st`,
`reinmax_cv`, `rloo`; formulas in `dst_jax.estimators.recent`) are registered alongside.

The package, by job: `checks` (logits and temperature validation), `noise` (Gumbel and Logistic
draws, the Gumbel-max sample, the argmax one-hot), `samplers` (exact samplers for the given-sample
forms), `cores` (the `custom_vjp` straight-through cores), `categorical`, `bernoulli`,
`relaxations`, `recent` (the newest studies' estimators and RLOO), `registry` (the `Estimator`
record, `REGISTRY`, `get`) and `catalog` (the registry's entries).

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
  before compiling. The uniform form `fn(key, logits, tau_f, tau_b)` (`get`, `Estimator.uniform`)
  also refuses a concrete temperature that the estimator would not read, naming the one it reads
  (`Estimator.resolve_temperatures`): `get("reinmax")(key, l, 1.3, 0.5)` is an error, since
  ReinMax reads only `tau_b`. Two-temperature functions have no default `tau_b`: calling one
  without it raises a TypeError that says so.
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

from dst_jax.estimators.bernoulli import (
    decoupled_reinmax_bernoulli,
    decoupled_st_bernoulli,
    gumbel_rao_bernoulli,
    identity_ste_bernoulli,
    reinmax_bernoulli,
    sigmoid_ste,
    st_gumbel_sigmoid,
)
from dst_jax.estimators.catalog import BERNOULLI, CATEGORICAL, NAMES, REFERENCE
from dst_jax.estimators.categorical import (
    decoupled_reinmax,
    decoupled_st,
    gumbel_rao,
    identity_ste,
    reinmax,
    softmax_ste,
    st_gumbel_softmax,
)
from dst_jax.estimators.checks import (
    DEFAULT_TAUS,
    TAU_MAX,
    TAU_MIN,
    TAU_MIN_FLOAT16,
    Array,
    check_temperatures,
)
from dst_jax.estimators.cores import mve_matrix
from dst_jax.estimators.noise import argmax_one_hot, bernoulli_mode, conditional_gumbel
from dst_jax.estimators.recent import (
    gapped_st,
    gapped_st_bernoulli,
    mve,
    mve_bernoulli,
    reinmax_cv,
    reinmax_cv_bernoulli,
    rloo,
    rloo_bernoulli,
    rloo_gradient,
    rloo_surrogate,
    zgr,
    zgr_bernoulli,
)
from dst_jax.estimators.registry import (
    FORMS,
    REGISTRY,
    Estimator,
    GivenSample,
    Registry,
    Uniform,
    bernoulli_name,
    get,
    lookup,
    register,
)
from dst_jax.estimators.relaxations import sigmoid_relaxation, softmax_relaxation
from dst_jax.estimators.samplers import SAMPLERS, sample_gumbel_max, sample_inverse_cdf

__all__ = [
    "Array",
    "BERNOULLI",
    "CATEGORICAL",
    "DEFAULT_TAUS",
    "Estimator",
    "FORMS",
    "GivenSample",
    "NAMES",
    "REFERENCE",
    "REGISTRY",
    "Registry",
    "SAMPLERS",
    "TAU_MAX",
    "TAU_MIN",
    "TAU_MIN_FLOAT16",
    "Uniform",
    "argmax_one_hot",
    "bernoulli_mode",
    "bernoulli_name",
    "check_temperatures",
    "conditional_gumbel",
    "decoupled_reinmax",
    "decoupled_reinmax_bernoulli",
    "decoupled_st",
    "decoupled_st_bernoulli",
    "gapped_st",
    "gapped_st_bernoulli",
    "get",
    "gumbel_rao",
    "gumbel_rao_bernoulli",
    "identity_ste",
    "identity_ste_bernoulli",
    "lookup",
    "mve",
    "mve_bernoulli",
    "mve_matrix",
    "register",
    "reinmax",
    "reinmax_bernoulli",
    "reinmax_cv",
    "reinmax_cv_bernoulli",
    "rloo",
    "rloo_bernoulli",
    "rloo_gradient",
    "rloo_surrogate",
    "sample_gumbel_max",
    "sample_inverse_cdf",
    "sigmoid_relaxation",
    "sigmoid_ste",
    "softmax_relaxation",
    "softmax_ste",
    "st_gumbel_sigmoid",
    "st_gumbel_softmax",
    "zgr",
    "zgr_bernoulli",
]
