"""The newest studies' estimators, under their former module name.

They live in `dst_jax.estimators.recent` (formulas and sources in its docstring) and are
exported by `dst_jax.estimators`; this module re-exports them so that imports written against
the old layout keep working.
"""

from dst_jax.estimators.cores import mve_matrix
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

__all__ = [
    "gapped_st",
    "gapped_st_bernoulli",
    "mve",
    "mve_bernoulli",
    "mve_matrix",
    "reinmax_cv",
    "reinmax_cv_bernoulli",
    "rloo",
    "rloo_bernoulli",
    "rloo_gradient",
    "rloo_surrogate",
    "zgr",
    "zgr_bernoulli",
]
