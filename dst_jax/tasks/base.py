"""The contract between a task (model + data + metrics) and the sweep engine.

A task describes how to train and evaluate ONE configuration. The sweep engine
(`dst_jax.sweep`) owns everything that is shared by all tasks: the optimiser, the `lax.scan`
over steps, minibatch order, keys, divergence handling, the `vmap` over a grid of
configurations, chunking, sharding, checkpoints and results.

A task's two traced methods take the same four arguments::

    loss(params, key, batch, hp) -> (scalar loss to minimise, {name: metric})
    evaluate(params, key, batch, hp) -> {name: metric}

- `params`: the model's parameters, any pytree (`init_params` makes them; a Flax module's
  `variables["params"]` works as is).
- `key`: a fresh `jax.random` key for this step (training) or this split (evaluation).
- `batch`: a `Batch`: `batch.x` the inputs (a minibatch in `loss`, a whole evaluation split in
  `evaluate`), `batch.y` their labels or None (data without labels: an unsupervised task), and
  `batch.fixed` the task's own fixed arrays (e.g. the DLGN wiring tables), {} for most tasks.
- `hp`: an `Hparams`: `hp.estimator` the registry entry being swept (a static value: one
  compiled program per estimator), `hp.tau_f`, `hp.tau_b` the temperatures of this step, traced
  float32 scalars. `hp.sampler(form)` is the estimator as `fn(key, logits) -> sample` at these
  temperatures, for stochastic units of `form` ("categorical": one-hot over the last axis;
  "bernoulli": {0, 1} elementwise).

Conventions every task follows:
- All functions are pure and traceable; the engine maps them with `vmap` over the grid's
  hyperparameters and compiles the result with `jit`.
- A task declares the form of its stochastic units (`unit_form`, "categorical" or
  "bernoulli"); whether it can train with a relaxation (an entry with `discrete=False`) is
  `accepts_relaxation`. A task that can train a score-function estimator (an entry with
  `score_function=True`, RLOO: several samples per input and a surrogate over their losses,
  built in the task's `loss`) sets `accepts_score_function = True`; a task without that
  attribute is not offered one.
- `load_data` returns a dict of arrays shared by the whole grid and passed to the compiled
  function as an argument (never closed over, so XLA does not constant-fold it). It holds
  `train_x` (N, ...) and the evaluation splits `<split>_x` ("val", "test"); labels
  `<split>_y` (N,) where the data have them (optional: without them `batch.y` is None); any
  other entry is one of the task's fixed arrays, handed to `loss` and `evaluate` as
  `batch.fixed`.
- `evaluate` computes a split's metrics; `param_metrics` those of the parameters alone (e.g.
  the gate histogram). Metric values are float32 scalars; NaN is allowed (the engine flags it).
  Small non-scalar arrays (e.g. a 16-bin histogram) go into the results' "final" dict as lists,
  not into the curves. The engine names a metric `m` of `loss` "train_m" (the value at the
  evaluation's step), of `evaluate` "<split>_m", of `param_metrics` "m"; the loss itself is
  "train_loss". So `loss` may not return a metric named "loss", nor `param_metrics` one named
  "step" or beginning with a split's prefix (`train_`, `val_`, `test_`): the engine refuses
  them (`checked_metrics`).
- `figure_arrays` returns the arrays a task's figures are drawn from (the presentation layer
  draws them; tasks never import a plotting library).

`TaskBase` gives a new task every method but `init_params`, `loss` and `evaluate`, with the data
loading of the built-in tasks (`common.load_data`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import jax

from dst_jax.estimators import Estimator

PyTree = Any
Metrics = dict[str, jax.Array]
Direction = Literal["max", "min"]

# The splits of a data dict, and what the engine prefixes to a metric of each.
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Batch:
    """What `Task.loss` and `Task.evaluate` read their data from (a pytree).

    Attributes:
      x: inputs, (B, ...): a training minibatch, or a whole evaluation split.
      y: labels of those inputs, (B,), or None when the data carry none.
      fixed: the task's fixed arrays (every `load_data` entry that is not a split's `_x`/`_y`,
        e.g. the DLGN wiring tables); {} for most tasks.
    """

    x: jax.Array
    y: jax.Array | None = None
    fixed: Mapping[str, jax.Array] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Hparams:
    """The swept hyperparameters a task's model reads (a pytree; `estimator` is static).

    Attributes:
      estimator: the registry entry (`dst_jax.estimators.Estimator`) being swept.
      tau_f: forward temperature at this step, a traced float32 scalar.
      tau_b: backward temperature at this step, a traced float32 scalar.
    """

    estimator: Estimator
    tau_f: jax.Array
    tau_b: jax.Array

    def sampler(self, form: str = "categorical") -> Callable[[jax.Array, jax.Array], jax.Array]:
        """The estimator at this step's temperatures, as `fn(key, logits) -> sample`.

        `form` is "categorical" (logits (..., K), one-hot sample over the last axis) or
        "bernoulli" (logits of any shape, {0, 1} sample elementwise).
        """
        sample = self.estimator.uniform(form)
        return lambda key, logits: sample(key, logits, self.tau_f, self.tau_b)


jax.tree_util.register_dataclass(Batch, data_fields=["x", "y", "fixed"], meta_fields=[])
jax.tree_util.register_dataclass(Hparams, data_fields=["tau_f", "tau_b"], meta_fields=["estimator"])


def is_split_array(name: str) -> bool:
    """Whether a data-dict key is a split's inputs or labels (`train_x`, `val_y`, ...)."""
    return any(name in (f"{s}_x", f"{s}_y") for s in SPLITS)


def split_batch(data: Mapping[str, jax.Array], split: str) -> Batch:
    """A whole split of a data dict as a `Batch` (labels None where the data have none)."""
    return Batch(data[f"{split}_x"], data.get(f"{split}_y"), fixed_arrays(data))


def fixed_arrays(data: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The entries of a data dict that are not a split's inputs or labels (`Batch.fixed`)."""
    return {k: v for k, v in data.items() if not is_split_array(k)}


class Task(Protocol):
    """What the sweep engine needs from a task. See the module docstring for conventions."""

    # Read-only attributes (class attributes or dataclass fields alike).
    @property
    def name(self) -> str:  # "sbn", "cae", "dlgn"
        ...

    # A frozen dataclass of the task's hyperparameters; the engine reads `config.batch_size`.
    @property
    def config(self) -> Any: ...

    @property
    def unit_form(self) -> Literal["categorical", "bernoulli"]: ...

    @property
    def accepts_relaxation(self) -> bool: ...

    # `headline_metric` (a split metric, e.g. "acc") picks the best config on the selection
    # split and is reported on the test split; `heatmap_metrics` (results keys, e.g.
    # "test_acc") get a (tau_f, tau_b) heatmap each.
    @property
    def headline_metric(self) -> str: ...

    @property
    def metric_directions(self) -> Mapping[str, Direction]: ...

    @property
    def heatmap_metrics(self) -> tuple[str, ...]: ...

    # Final arrays that are histograms over named bins (results key -> bin names, e.g.
    # "gate_hist" -> the 16 gate names): summaries tabulate and figures draw them for the best
    # config of each estimator.
    @property
    def histograms(self) -> Mapping[str, tuple[str, ...]]: ...

    def load_data(self, data_dir: str | None) -> tuple[dict[str, jax.Array], dict[str, Any]]:
        """Load and preprocess the task's data once, as device arrays.

        Returns `(data, info)`: `data` holds `train_x`, the evaluation splits' `<split>_x`,
        labels `<split>_y` where there are any, and the task's fixed arrays; `info` is
        JSON-able provenance (at least "dataset": the variant name, e.g. "fashion_mnist" or
        "cifar10-jpeg-q75"), copied into results.json.
        """
        ...

    def init_params(self, key: jax.Array, data: Mapping[str, jax.Array]) -> PyTree:
        """Initial parameters of one model (`data` as `load_data` returned it)."""
        ...

    def loss(
        self, params: PyTree, key: jax.Array, batch: Batch, hp: Hparams
    ) -> tuple[jax.Array, Metrics]:
        """Training loss (scalar, to be minimised) on one minibatch `batch` and its train-mode
        metrics (reported as "train_<name>"; no metric named "loss")."""
        ...

    def evaluate(self, params: PyTree, key: jax.Array, batch: Batch, hp: Hparams) -> Metrics:
        """Metrics of one model on one evaluation split `batch` (runs inside the compiled loop;
        reported as "<split>_<name>")."""
        ...

    def param_metrics(self, params: PyTree) -> Metrics:
        """Metrics of the parameters alone, independent of any split ({} if none)."""
        ...

    def figure_arrays(self, params: PyTree, data: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The arrays the task's figures are drawn from, for one trained model ({} if none)."""
        ...


class TaskBase:
    """Defaults for a task: subclass it, set the class attributes, write `init_params`, `loss`
    and `evaluate`. A subclass is usually a frozen dataclass with one field, `config` (which
    must have `batch_size`; `dataset` and `common.SplitConfig`'s fields for the default
    `load_data`)."""

    # Class attributes (not dataclass fields: this base is no dataclass); see `Task`.
    config: Any
    name: str
    unit_form: Literal["categorical", "bernoulli"] = "categorical"
    accepts_relaxation: bool = False
    headline_metric: str
    metric_directions: Mapping[str, Direction] = {}
    heatmap_metrics: tuple[str, ...] = ()
    histograms: Mapping[str, tuple[str, ...]] = {}
    # How `load_data` hands the pixels over (`dst_jax.data.pipeline.device_split`): "unit",
    # floats in [0, 1]; "threshold", the binary thresholded channels.
    input_encoding: str = "unit"
    # False: `load_data` drops the labels (an unsupervised task; `batch.y` is then None).
    reads_labels: bool = True

    def load_data(self, data_dir: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """`config.dataset`'s train and test splits, cut by the config (`common.load_data`)."""
        from dst_jax.tasks import common

        return common.load_data(self.config, data_dir, self.input_encoding, self.reads_labels)

    def param_metrics(self, params: PyTree) -> Metrics:
        return {}

    def figure_arrays(self, params: PyTree, data: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return {}


# Names the engine writes into a run's curves besides the prefixed metrics.
ENGINE_NAMES = ("step", "train_loss")


def checked_metrics(task: Any, method: str, metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    """`metrics` of `task.<method>`, after refusing a name that would overwrite one the engine
    makes: `loss`'s metrics become "train_<name>" beside the engine's "train_loss", so "loss"
    is refused there; `param_metrics`' keep their names beside "step" and every split's
    "<split>_<name>", so those are refused there. Names are static, so this runs at trace time.

    Raises:
      ValueError: naming the task, the method and the metric.
    """
    for metric in metrics:
        if method == "loss" and metric == "loss":
            why = "which would overwrite the training loss the engine reports as 'train_loss'"
        elif method == "param_metrics" and (
            metric in ENGINE_NAMES or any(metric.startswith(f"{s}_") for s in SPLITS)
        ):
            why = "which clashes with the engine's names ('step', '<split>_<metric>')"
        else:
            continue
        task_name = getattr(task, "name", type(task).__name__)
        raise ValueError(
            f"task {task_name!r}: {method} returns a metric named {metric!r}, {why}; rename it"
        )
    return metrics


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
