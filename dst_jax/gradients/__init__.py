"""Gradient quality of the estimators against exact gradients, by enumerating every code.

Split by job: `exact` (the exact expectation and gradient over every code, f tabulated at the
codes), `measure` (the estimators' draws over a temperature grid and their bias, spread and
cosine against the exact references), `protocol` (the `cae` model, trained by the sweep engine,
measured at its checkpoints), `claims` (the statistics and claim checks of a measured grid) and
`report` (summary.md, per_image.npz, figures). The names below are the package's public
interface, importable as `dst_jax.gradients.X`; `python -m experiments.gradients` runs the
protocol.
"""

from __future__ import annotations

from dst_jax.estimators import DEFAULT_TAUS
from dst_jax.gradients.claims import claimed_moves, noise_ratio
from dst_jax.gradients.exact import (
    all_codes,
    code_index,
    exact_gradient,
    expectation,
    log_q,
    one_hot_codes,
    tabulate,
    tabulated,
)
from dst_jax.gradients.measure import (
    METRICS,
    REFERENCES,
    Objective,
    configs,
    estimator_gradients,
    gradient_quality,
    grid_quality,
    quality,
)

__all__ = [
    "DEFAULT_TAUS",
    "METRICS",
    "REFERENCES",
    "Objective",
    "all_codes",
    "claimed_moves",
    "code_index",
    "configs",
    "estimator_gradients",
    "exact_gradient",
    "expectation",
    "gradient_quality",
    "grid_quality",
    "log_q",
    "noise_ratio",
    "one_hot_codes",
    "quality",
    "tabulate",
    "tabulated",
]
