"""Training of ONE configuration as pure functions; the grid is `vmap` of these.

PureJaxRL-style: `make_fns(task, estimator, total_steps)` returns `init(hp, data)` and
`segment(state, hp, data, start, n_steps)`. A segment runs `n_steps` optimisation steps in a
`lax.scan`, then evaluates on the validation split (if the data hold one) and the test split
(after every segment, or only after the last step: `test_at`), all inside one compiled function.
The host loop only strings segments together (one per evaluation interval), which is where
checkpoints and the progress bar live.

`hp` holds one config's hyperparameters as scalars (`grid.hparams_array`): temperatures, their
schedule and final values, learning rate and its schedule, seed. Temperatures and learning rate
follow their schedules over the `total_steps` of the run (`schedules`); an evaluation after step
t uses the temperatures of step t.

Randomness is a pure function of (seed, step): the parameter init, the minibatch order, the
estimator's noise at step t and the evaluation noise after step t are all derived from
`jax.random.key(seed, impl=prng)` by `fold_in`. A run is therefore the same whether it is trained
alone, in a grid, in another chunk, or resumed from a checkpoint.

Divergence: a step whose loss or gradient is not finite is not applied, the run is marked
`diverged` (sticky) and its parameters stay at their last finite values, so one bad config never
poisons the numbers of the others (vmapped configs are independent anyway). A diverged run's
optimiser state is left to go non-finite: nothing reads it again.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dst_jax.data import pipeline
from dst_jax.estimators import Estimator
from dst_jax.sweep import schedules
from dst_jax.sweep.config import TEST_AT, build_optimizer
from dst_jax.tasks import base as task_api
from dst_jax.tasks.base import Task

# Evaluation splits, in the order they are evaluated; a task's data holds `<split>_x` (and
# `<split>_y` where it has labels) for those it has.
EVAL_SPLITS = ("val", "test")

Hparams = dict[str, jax.Array]  # scalars per config (grid.hparams_array)


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    order: jax.Array  # (n_train,) int32: the current epoch's permutation
    diverged: jax.Array  # bool: a non-finite loss or gradient was seen
    diverged_step: jax.Array  # int32: first such step, -1 if none


def _keys(seed: jax.Array, prng: str) -> dict[str, jax.Array]:
    k_init, k_data, k_train, k_eval = jax.random.split(jax.random.key(seed, impl=prng), 4)
    return {"init": k_init, "data": k_data, "train": k_train, "eval": k_eval}


def optimizer(
    hp: Hparams, total_steps: int, options: Mapping[str, Any] | None = None, task: Any = None
) -> optax.GradientTransformation:
    """The run's optimizer: `options` are `SweepConfig.optimizer_options` (default: Adam), and
    `task.make_optimizer` builds it for `optimizer="task"`."""
    # Built inside the traced function so the learning rate can be a vmapped grid axis.
    lr = schedules.learning_rate(hp["lr_schedule"], hp["lr"], total_steps)
    options = dict(options or {})
    name = options.pop("optimizer", "adam")
    return build_optimizer(name, lr, task_factory=getattr(task, "make_optimizer", None), **options)


def temperatures(hp: Hparams, t: jax.Array, total_steps: int) -> tuple[jax.Array, jax.Array]:
    """(tau_f, tau_b) at step t: each anneals from its grid value to its final value."""
    frac = t / total_steps
    kind = hp["tau_schedule"]
    return (
        schedules.temperature(kind, hp["tau_f"], hp["tau_f_final"], frac),
        schedules.temperature(kind, hp["tau_b"], hp["tau_b_final"], frac),
    )


def _eval_key(keys: dict[str, jax.Array], split: str, end: jax.Array) -> jax.Array:
    """Each split's evaluation noise after step `end`: test's is fold_in(eval, end), the other
    splits fold in their position once more."""
    key = jax.random.fold_in(keys["eval"], end)
    return key if split == "test" else jax.random.fold_in(key, EVAL_SPLITS.index(split) + 1)


def make_fns(
    task: Task,
    estimator: Estimator,
    total_steps: int,
    *,
    test_at: str = TEST_AT[0],
    prng: str = "threefry2x32",
    train_metrics: str = "last",
    optimizer_options: Mapping[str, Any] | None = None,
):
    """(init, segment) for one configuration of `task` trained with `estimator` (an entry of
    `dst_jax.estimators.REGISTRY`) for `total_steps` steps. `test_at="end"` evaluates the test
    split only in the segment that ends at `total_steps` (its metrics are NaN before).
    A segment's `train_*` metrics are those of its last step (`train_metrics="last"`, what a
    sweep records) or their mean over its steps (`"mean"`, a smoother training curve).
    `optimizer_options` are `optimizer`'s (default: Adam)."""
    batch_size = task.config.batch_size
    if train_metrics not in ("last", "mean"):
        raise ValueError(f"train_metrics must be 'last' or 'mean', got {train_metrics!r}")
    if test_at not in ("every", "end"):
        raise ValueError(f"test_at must be 'every' or 'end', got {test_at!r}")

    def init(hp: Hparams, data) -> TrainState:
        keys = _keys(hp["seed"], prng)
        params = task.init_params(keys["init"], data)
        n = data["train_x"].shape[0]
        return TrainState(
            params=params,
            opt_state=optimizer(hp, total_steps, optimizer_options, task).init(params),
            order=pipeline.init_batch_order(n),
            diverged=jnp.zeros((), bool),
            diverged_step=jnp.full((), -1, jnp.int32),
        )

    def evaluate(params, hp, data, split: str, end: jax.Array):
        tau_f, tau_b = temperatures(hp, end, total_steps)
        key = _eval_key(_keys(hp["seed"], prng), split, end)
        batch = task_api.split_batch(data, split)
        metrics = task.evaluate(params, key, batch, task_api.Hparams(estimator, tau_f, tau_b))
        return {f"{split}_{k}": v for k, v in metrics.items()}

    def segment(state: TrainState, hp: Hparams, data, start: jax.Array, n_steps: int):
        keys = _keys(hp["seed"], prng)
        opt = optimizer(hp, total_steps, optimizer_options, task)
        n = data["train_x"].shape[0]

        def step(state: TrainState, t: jax.Array):
            idx, order = pipeline.batch_indices(
                keys["data"], t, state.order, n=n, batch_size=batch_size
            )
            y = data["train_y"][idx] if "train_y" in data else None
            batch = task_api.Batch(data["train_x"][idx], y, task_api.fixed_arrays(data))
            tau_f, tau_b = temperatures(hp, t, total_steps)
            (loss, aux), grads = jax.value_and_grad(task.loss, has_aux=True)(
                state.params,
                jax.random.fold_in(keys["train"], t),
                batch,
                task_api.Hparams(estimator, tau_f, tau_b),
            )
            aux = task_api.checked_metrics(task, "loss", aux)
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
            apply = finite & ~state.diverged
            newly_diverged = ~finite & ~state.diverged
            new_state = TrainState(
                params=jax.tree.map(lambda a, b: jnp.where(apply, a, b), params, state.params),
                # Not guarded: once a run has diverged its optimiser state is never used again
                # (every later step is discarded too), and selecting it here made XLA copy the
                # Adam moments every step (8.7 MB per cae step; `benchmarks.copies` counts them).
                opt_state=opt_state,
                order=order,
                diverged=state.diverged | ~finite,
                diverged_step=jnp.where(newly_diverged, t, state.diverged_step),
            )
            return new_state, {"train_loss": loss, **{f"train_{k}": v for k, v in aux.items()}}

        steps = start + jnp.arange(n_steps, dtype=jnp.int32)
        state, per_step = jax.lax.scan(step, state, steps)
        end = start + n_steps
        # By default the training metrics at the segment's last step: the value at the
        # evaluation's step, as every other metric of that evaluation.
        if train_metrics == "mean":
            metrics = {k: v.mean() for k, v in per_step.items()}
        else:
            metrics = {k: v[-1] for k, v in per_step.items()}
        if "val_x" in data:
            metrics.update(evaluate(state.params, hp, data, "val", end))
        if test_at == "every":
            metrics.update(evaluate(state.params, hp, data, "test", end))
        else:
            # A cond on the (unbatched) step stays a branch under vmap: the test split costs one
            # evaluation per run, not one per segment.
            test = functools.partial(evaluate, state.params, hp, data, "test")
            metrics.update(
                jax.lax.cond(end == total_steps, lambda: test(end), lambda: _nan_like(test, end))
            )
        metrics.update(
            task_api.checked_metrics(task, "param_metrics", task.param_metrics(state.params))
        )
        return state, metrics

    return init, segment


def _nan_like(fn, *args):
    """NaN arrays of the shapes and dtypes `fn(*args)` returns, without running it."""
    return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), jax.eval_shape(fn, *args))
