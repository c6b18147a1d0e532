"""The contract between a task (model + data + metrics) and the sweep engine.

A task describes how to train and evaluate ONE configuration. The sweep engine
(`dst_jax.sweep`) owns everything that is shared by all tasks: the optimiser (Adam with a traced
learning rate), the `lax.scan` over steps, minibatch order, keys, divergence handling, the `vmap`
over a grid of configurations, chunking, sharding, checkpoints and results files.

Conventions every task follows:
- All functions are pure and traceable; the engine `vmap`s them over (tau_f, tau_b, seed, lr)
  and `jit`s the result. `tau_f`, `tau_b` arrive as traced float32 scalars.
- `estimator` is a static Python string (one compiled program per estimator). Tasks accept the
  four family names `decoupled_st`, `softmax_ste`, `st_gumbel_softmax`, `identity_ste` and map them
  to the categorical or Bernoulli function they need; a task may accept extra names (the DLGN
  task's `softmax_relaxation` reference row).
- `data` is a dict of device arrays shared by the whole grid and passed to the compiled function
  as an argument (never closed over, so XLA does not constant-fold it). It holds at least
  `train_x` (N, ...) and `train_y` (N,), `test_x`, `test_y`; a task may add fixed arrays of its
  own (the DLGN wiring).
- Metric values are float32 scalars; NaN is allowed (the engine flags it). `evaluate` may also
  return small non-scalar arrays (e.g. a 16-bin gate histogram): they go into the results' "final"
  dict as lists, not into the curves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

import jax

PyTree = Any
Metrics = dict[str, jax.Array]
Direction = Literal["max", "min"]

# Family names used on the command line and in results files.
ESTIMATOR_FAMILIES = ("decoupled_st", "softmax_ste", "st_gumbel_softmax", "identity_ste")


class Task(Protocol):
    """What the sweep engine needs from a task. See the module docstring for conventions."""

    name: str  # "sbn", "cae", "dlgn"
    # A frozen dataclass of the task's hyperparameters; the engine reads `config.batch_size`.
    config: Any

    # Metrics the engine reports. `headline_metric` picks the best config (its direction says
    # whether larger is better); `heatmap_metrics` get a (tau_f, tau_b) heatmap each.
    headline_metric: str
    metric_directions: Mapping[str, Direction]
    heatmap_metrics: tuple[str, ...]
    estimators: tuple[str, ...]  # names this task accepts
    # Estimators without a temperature (trained once per lr x seed, tau written as 1.0).
    untempered_estimators: tuple[str, ...]

    def load_data(self, data_dir: str | None) -> tuple[dict[str, jax.Array], dict[str, Any]]:
        """Load and preprocess the task's data once, as device arrays.

        Returns `(data, info)`; `info` is JSON-able provenance (at least "dataset": the variant
        name, e.g. "fashion_mnist" or "cifar10-jpeg-q75"), copied into results.json.
        """
        ...

    def init_params(self, key: jax.Array, data: Mapping[str, jax.Array]) -> PyTree:
        """Initial parameters of one model."""
        ...

    def loss(
        self,
        params: PyTree,
        key: jax.Array,
        x: jax.Array,
        y: jax.Array,
        data: Mapping[str, jax.Array],
        estimator: str,
        tau_f: jax.Array,
        tau_b: jax.Array,
    ) -> tuple[jax.Array, Metrics]:
        """Training loss (scalar, to be minimised) on one minibatch and its train-mode metrics."""
        ...

    def evaluate(
        self,
        params: PyTree,
        key: jax.Array,
        data: Mapping[str, jax.Array],
        estimator: str,
        tau_f: jax.Array,
        tau_b: jax.Array,
    ) -> Metrics:
        """Test-split metrics of one model (runs inside the compiled loop)."""
        ...

    def figures(
        self,
        out_dir: str,
        results: dict[str, Any],
        best_params: Mapping[str, PyTree],
        data: Mapping[str, jax.Array],
    ) -> list[str]:
        """Task-specific PNGs written after a sweep; returns the paths written.

        `best_params[estimator]` holds the final parameters of that estimator's best single run
        (by the headline metric). Tasks with nothing extra to draw return [].
        """
        ...
