"""dst_jax: decoupled straight-through estimators for JAX, and sweeps over their temperatures.

The estimators, their registry (`REGISTRY`, `Estimator`, `get`) and the relaxations are
re-exported here; `dst_jax.layers.linen` / `dst_jax.layers.nnx` hold Flax layers. Tasks, data and
the sweep engine are imported from their own modules on demand, so `import dst_jax` stays light.
"""

from dst_jax import estimators, estimators_recent
from dst_jax.estimators import (
    REGISTRY,
    Estimator,
    decoupled_reinmax,
    decoupled_reinmax_bernoulli,
    decoupled_st,
    decoupled_st_bernoulli,
    get,
    gumbel_rao,
    gumbel_rao_bernoulli,
    identity_ste,
    identity_ste_bernoulli,
    reinmax,
    reinmax_bernoulli,
    sigmoid_relaxation,
    sigmoid_ste,
    softmax_relaxation,
    softmax_ste,
    st_gumbel_sigmoid,
    st_gumbel_softmax,
)
from dst_jax.estimators_recent import gapped_st, mve, reinmax_cv, zgr

__version__ = "0.2.0"

__all__ = [
    "REGISTRY",
    "Estimator",
    "decoupled_reinmax",
    "decoupled_reinmax_bernoulli",
    "decoupled_st",
    "decoupled_st_bernoulli",
    "estimators",
    "estimators_recent",
    "gapped_st",
    "get",
    "gumbel_rao",
    "gumbel_rao_bernoulli",
    "identity_ste",
    "identity_ste_bernoulli",
    "mve",
    "reinmax",
    "reinmax_bernoulli",
    "reinmax_cv",
    "sigmoid_relaxation",
    "sigmoid_ste",
    "softmax_relaxation",
    "softmax_ste",
    "st_gumbel_sigmoid",
    "st_gumbel_softmax",
    "zgr",
]
