"""dst_jax: decoupled straight-through estimators for JAX, and sweeps over their temperatures.

The estimators, their registry (`REGISTRY`, `Estimator`, `get`) and the relaxations are
re-exported here; `dst_jax.layers.linen` / `dst_jax.layers.nnx` hold Flax layers. Tasks, data and
the sweep engine are imported on first use (PEP 562 module `__getattr__`), so `import dst_jax`
stays light while `dst_jax.data.load(...)`, `dst_jax.sweep.SweepConfig` or
`dst_jax.run_sweep(task, config, out)` work without importing them first.
"""

import importlib
from typing import Any

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

# Submodules imported on first attribute access (Flax, optax, matplotlib load only when needed).
_LAZY_SUBMODULES = (
    "cli",
    "confirm",
    "data",
    "experiments",
    "figures",
    "gradients",
    "io",
    "layers",
    "logic",
    "plotting",
    "runner",
    "summary",
    "sweep",
    "tasks",
)
# Names of submodules re-exported here, imported on first access too.
_LAZY_NAMES = {"run_sweep": "dst_jax.runner", "SweepConfig": "dst_jax.sweep.config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"dst_jax.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'dst_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_SUBMODULES, *_LAZY_NAMES})


__all__ = [
    "REGISTRY",
    "Estimator",
    "SweepConfig",
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
    "run_sweep",
    "sigmoid_relaxation",
    "sigmoid_ste",
    "softmax_relaxation",
    "softmax_ste",
    "st_gumbel_sigmoid",
    "st_gumbel_softmax",
    "zgr",
]
