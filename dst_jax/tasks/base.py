"""The contract between a task (model + data + metrics) and the sweep engine.

A task describes how to train and evaluate ONE configuration. The sweep engine
(`dst_jax.sweep`) owns everything that is shared by all tasks: the optimiser, the `lax.scan`
over steps, minibatch order, keys, divergence handling, the `vmap` over a grid of
configurations, chunking, sharding, checkpoints and results.

Conventions every task follows:
- All functions are pure and traceable; the engine maps them with `vmap` over the grid's
  hyperparameters and compiles the result with `jit`. `tau_f`, `tau_b` arrive as traced
  float32 scalars.
- `estimator` is a registry entry (`dst_jax.estimators.Estimator`), a static value: one compiled
  program per estimator. A task declares the form of its stochastic units (`unit_form`,
  "categorical" or "bernoulli") and calls `estimator.uniform(self.unit_form)`, the function
  `(key, logits, tau_f, tau_b) -> sample`; whether it can train with a relaxation (an entry with
  `discrete=False`) is `accepts_relaxation`. A task that can train a score-function estimator
  (an entry with `score_function=True`, RLOO: several samples per input and a surrogate over
  their losses, built in the task's `loss`) sets `accepts_score_function = True`; a task
  without that attribute is not offered one.
- `data` is a dict of device arrays shared by the whole grid and passed to the compiled function
  as an argument (never closed over, so XLA does not constant-fold it). It holds at least
  `train_x` (N, ...) and `train_y` (N,) and the evaluation splits `<split>_x`, `<split>_y`;
  a task may add fixed arrays of its own (the DLGN wiring).
- `evaluate` computes a split's metrics from `(x, y)`; `param_metrics` those of the parameters
  alone (e.g. the gate histogram). Metric values are float32 scalars; NaN is allowed (the engine
  flags it). Small non-scalar arrays (e.g. a 16-bin histogram) go into the results' "final"
  dict as lists, not into the curves.
- `figure_arrays` returns the arrays a task's figures are drawn from (the presentation layer
  draws them; tasks never import a plotting library).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

import jax

from dst_jax.estimators import Estimator

PyTree = Any
Metrics = dict[str, jax.Array]
Direction = Literal["max", "min"]


class Task(Protocol):
    """What the sweep engine needs from a task. See the module docstring for conventions."""

    name: str  # "sbn", "cae", "dlgn"
    # A frozen dataclass of the task's hyperparameters; the engine reads `config.batch_size`.
    config: Any
    unit_form: Literal["categorical", "bernoulli"]
    accepts_relaxation: bool

    # `headline_metric` (a split metric, e.g. "acc") picks the best config on the selection
    # split and is reported on the test split; `heatmap_metrics` (results keys, e.g.
    # "test_acc") get a (tau_f, tau_b) heatmap each.
    headline_metric: str
    metric_directions: Mapping[str, Direction]
    heatmap_metrics: tuple[str, ...]
    # Final arrays that are histograms over named bins (results key -> bin names, e.g.
    # "gate_hist" -> the 16 gate names): summaries tabulate and figures draw them for the best
    # config of each estimator.
    histograms: Mapping[str, tuple[str, ...]]

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
        estimator: Estimator,
        tau_f: jax.Array,
        tau_b: jax.Array,
    ) -> tuple[jax.Array, Metrics]:
        """Training loss (scalar, to be minimised) on one minibatch and its train-mode metrics."""
        ...

    def evaluate(
        self,
        params: PyTree,
        key: jax.Array,
        x: jax.Array,
        y: jax.Array,
        data: Mapping[str, jax.Array],
        estimator: Estimator,
        tau_f: jax.Array,
        tau_b: jax.Array,
    ) -> Metrics:
        """Metrics of one model on one evaluation split (runs inside the compiled loop)."""
        ...

    def param_metrics(self, params: PyTree) -> Metrics:
        """Metrics of the parameters alone, independent of any split ({} if none)."""
        ...

    def figure_arrays(self, params: PyTree, data: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The arrays the task's figures are drawn from, for one trained model ({} if none)."""
        ...


def direction(task: Task, metric: str) -> Direction:
    """Whether larger is better for `metric`, a task metric or one prefixed by its split
    (`val_`, `test_`, `train_`); "max" when the task does not say."""
    directions = task.metric_directions
    if metric in directions:
        return directions[metric]
    for prefix in ("val_", "test_", "train_"):
        if metric.startswith(prefix) and metric[len(prefix) :] in directions:
            return directions[metric[len(prefix) :]]
    return "max"
