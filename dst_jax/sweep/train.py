"""Training of ONE configuration as pure functions; the grid is `vmap` of these.

PureJaxRL-style: `make_fns(task, estimator)` returns `init(hp, data)` and
`segment(state, hp, data, start, n_steps)`. A segment runs `n_steps` optimisation steps in a
`lax.scan`, then evaluates on every evaluation split the data holds (`val`, `test`), all inside
one compiled function. The host loop only strings segments together (one per evaluation
interval), which is where checkpoints and the progress bar live.

Randomness is a pure function of (seed, step): the parameter init, the minibatch order, the
estimator's noise at step t and the evaluation noise after step t are all derived from
`PRNGKey(seed)` by `fold_in`. A run is therefore the same whether it is trained alone, in a grid,
in another chunk, or resumed from a checkpoint.

Divergence: a step whose loss or gradient is not finite is not applied, the run is marked
`diverged` (sticky) and its parameters stay at their last finite values, so one bad config never
poisons the numbers of the others (vmapped configs are independent anyway). A diverged run's
optimiser state is left to go non-finite: nothing reads it again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dst_jax.data import pipeline
from dst_jax.estimators import Estimator
from dst_jax.tasks.base import Task

# Evaluation splits, in the order they are evaluated; a task's data holds `<split>_x/_y` for
# those it has.
EVAL_SPLITS = ("val", "test")

Hparams = dict[str, jax.Array]  # tau_f, tau_b, lr (float32), seed (int32): scalars per config


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    order: jax.Array  # (n_train,) int32: the current epoch's permutation
    diverged: jax.Array  # bool: a non-finite loss or gradient was seen
    diverged_step: jax.Array  # int32: first such step, -1 if none


def _keys(seed: jax.Array) -> dict[str, jax.Array]:
    k_init, k_data, k_train, k_eval = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {"init": k_init, "data": k_data, "train": k_train, "eval": k_eval}


def optimizer(lr: jax.Array) -> optax.GradientTransformation:
    # Built inside the traced function so the learning rate can be a vmapped grid axis.
    return optax.adam(lr)


def eval_splits(data) -> tuple[str, ...]:
    return tuple(s for s in EVAL_SPLITS if f"{s}_x" in data)


def _eval_key(keys: dict[str, jax.Array], split: str, end: jax.Array) -> jax.Array:
    """Each split's evaluation noise after step `end`: test's is fold_in(eval, end), the other
    splits fold in their position once more."""
    key = jax.random.fold_in(keys["eval"], end)
    return key if split == "test" else jax.random.fold_in(key, EVAL_SPLITS.index(split) + 1)


def make_fns(task: Task, estimator: Estimator):
    """(init, segment) for one configuration of `task` trained with `estimator` (an entry of
    `dst_jax.estimators.REGISTRY`)."""
    batch_size = task.config.batch_size

    def init(hp: Hparams, data) -> TrainState:
        keys = _keys(hp["seed"])
        params = task.init_params(keys["init"], data)
        n = data["train_x"].shape[0]
        return TrainState(
            params=params,
            opt_state=optimizer(hp["lr"]).init(params),
            order=pipeline.init_batch_order(n),
            diverged=jnp.zeros((), bool),
            diverged_step=jnp.full((), -1, jnp.int32),
        )

    def segment(state: TrainState, hp: Hparams, data, start: jax.Array, n_steps: int):
        keys = _keys(hp["seed"])
        opt = optimizer(hp["lr"])
        n = data["train_x"].shape[0]

        def step(state: TrainState, t: jax.Array):
            idx, order = pipeline.batch_indices(
                keys["data"], t, state.order, n=n, batch_size=batch_size
            )
            x, y = data["train_x"][idx], data["train_y"][idx]
            (loss, aux), grads = jax.value_and_grad(task.loss, has_aux=True)(
                state.params,
                jax.random.fold_in(keys["train"], t),
                x,
                y,
                data,
                estimator,
                hp["tau_f"],
                hp["tau_b"],
            )
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
        metrics = {k: v.mean() for k, v in per_step.items()}
        for split in eval_splits(data):
            split_metrics = task.evaluate(
                state.params,
                _eval_key(keys, split, end),
                data[f"{split}_x"],
                data[f"{split}_y"],
                data,
                estimator,
                hp["tau_f"],
                hp["tau_b"],
            )
            metrics.update({f"{split}_{k}": v for k, v in split_metrics.items()})
        metrics.update(task.param_metrics(state.params))
        return state, metrics

    return init, segment
