"""The vmapped grid (dst_jax's engine) against a Python loop of jitted single-model steps.

Both train the same configs with the same task functions, the same Adam and the same on-device
minibatch order (`dst_jax.data.pipeline`); they differ only in how the configs and steps are
driven:

- grid: `dst_jax.sweep.engine.train_runs`, i.e. `jit(vmap(segment))` with the steps in a
  `lax.scan`, all configs in one chunk. Timed over whole segments (`steps` steps plus one
  evaluation of a 100-example slice), after one warm-up segment of the same length; its compile
  time is the engine's own `timing["compile_s"]`.
- loop: what a JAX user writes without the engine: one `jax.jit` training step, called from a
  Python loop over steps, one config after another. The same step body as the engine's, without
  its divergence guard. Compile time is the first call.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from benchmarks.common import ESTIMATOR, GRID, Setup, clock, make_runs, training_row
from dst_jax import estimators
from dst_jax.data import pipeline
from dst_jax.sweep import engine
from dst_jax.tasks.base import Batch, Hparams, fixed_arrays


def grid_engine(setup: Setup, n_configs: int, steps: int) -> dict[str, Any]:
    """Train `n_configs` configs as one vmapped chunk; time `steps` steps after a warm-up.

    The engine runs two segments of `steps` steps (`eval_every = steps`); the callback it calls
    after each segment, once that segment's metrics are on the host, marks the clock, so the
    timed interval is exactly the second segment.
    """
    runs = make_runs(setup, n_configs)
    marks: list[float] = []
    out = engine.train_runs(
        setup.task,
        setup.data,
        runs,
        steps=2 * steps,
        eval_every=steps,
        chunk_size=n_configs,
        devices=jax.devices()[:1],
        callback=lambda est, chunk, segment: marks.append(clock()),
        test_at="every",  # both segments evaluate the test split (the timed one is the second)
    )
    timing = out.timing[ESTIMATOR]
    if timing["n_chunks"] != 1 or len(marks) != 2:
        raise RuntimeError(f"expected one chunk of two segments, got {timing} and {len(marks)}")
    return training_row(
        GRID,
        n_configs,
        steps,
        setup.batch_size,
        marks[1] - marks[0],
        timing["compile_s"],
        note="the timed segment ends with one evaluation of 100 test examples",
    )


def make_single_step(setup: Setup):
    """(init, step) of ONE config, jitted separately: the naive JAX way.

    init(seed, lr, data) -> (params, opt_state, order)
    step(params, opt_state, order, t, hp, data) -> (params, opt_state, order, loss)
    with hp = {"seed", "tau_f", "tau_b", "lr"} device scalars. The data dict is an argument, so
    nothing is constant-folded into the program.
    """
    task = setup.task
    batch_size = setup.batch_size
    n = setup.data["train_x"].shape[0]

    def keys(seed):
        k_init, k_data, k_train = jax.random.split(jax.random.PRNGKey(seed), 3)
        return k_init, k_data, k_train

    @jax.jit
    def init(seed, lr, data):
        params = task.init_params(keys(seed)[0], data)
        return params, optax.adam(lr).init(params), pipeline.init_batch_order(n)

    @jax.jit
    def step(params, opt_state, order, t, hp, data):
        _, k_data, k_train = keys(hp["seed"])
        idx, order = pipeline.batch_indices(k_data, t, order, n=n, batch_size=batch_size)
        (loss, _), grads = jax.value_and_grad(task.loss, has_aux=True)(
            params,
            jax.random.fold_in(k_train, t),
            Batch(data["train_x"][idx], data["train_y"][idx], fixed_arrays(data)),
            Hparams(estimators.REGISTRY[ESTIMATOR], hp["tau_f"], hp["tau_b"]),
        )
        updates, opt_state = optax.adam(hp["lr"]).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, order, loss

    return init, step


def python_loop(setup: Setup, steps: int, n_configs: int) -> dict[str, Any]:
    """Train the first `n_configs` configs one after another with a jitted step.

    Each config's steps are dispatched asynchronously and its loss is read at the end, as a
    user printing the final loss would. The first call (compilation) and a warm-up pass of 10
    steps are not timed. Returns {"per_config_s": mean training seconds per config,
    "compile_s": the first call, "measured_configs": n_configs}: a loop over configs costs the
    same for every config, so a grid of any size costs n * per_config_s.
    """
    runs = make_runs(setup, n_configs)
    data = jax.device_put(setup.data)
    init, step = make_single_step(setup)

    def hparams(run):
        return {
            "seed": jnp.int32(run.seed),
            "tau_f": jnp.float32(run.tau_f),
            "tau_b": jnp.float32(run.tau_b),
            "lr": jnp.float32(run.lr),
        }

    hp = hparams(runs[0])
    params, opt_state, order = init(hp["seed"], hp["lr"], data)
    t0 = clock()
    jax.block_until_ready(step(params, opt_state, order, 0, hp, data))
    compile_s = clock() - t0
    for t in range(min(steps, 10)):  # warm-up: allocator, caches
        params, opt_state, order, loss = step(params, opt_state, order, t, hp, data)
    loss.block_until_ready()

    wall = 0.0
    for run in runs:
        hp = hparams(run)
        params, opt_state, order = jax.block_until_ready(init(hp["seed"], hp["lr"], data))
        t0 = clock()
        for t in range(steps):
            params, opt_state, order, loss = step(params, opt_state, order, t, hp, data)
        float(loss)
        wall += clock() - t0
    return {"per_config_s": wall / len(runs), "compile_s": compile_s, "measured_configs": len(runs)}
