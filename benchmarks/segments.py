"""The engine's training segment compiled alone and under vmap, timed in turn; shared by the
diagnostics `vmap_overhead`, `compare_checkouts` and `copies`.

A segment (dst_jax/sweep/train.py) runs n training steps in a `lax.scan`, then evaluates. The
time of a training step is (segment of 2n steps - segment of n steps) / n, so the evaluation
cancels out. Programs are compiled and warmed up first, then timed in turn for `repeats` rounds,
each keeping its best: on a shared machine the speed drifts from one minute to the next, and
interleaving keeps a drift from favouring one program.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from inspect import signature
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.common import TASKS, Setup, make_runs
from dst_jax.argtypes import names
from dst_jax.sweep import grid

STEPS = {"sbn": 20, "cae": 10, "dlgn": 4}  # per timed segment: well above the timer's noise


@dataclasses.dataclass
class Program:
    fn: Callable  # jitted (state, hp, data, start, n_steps) -> (state, metrics)
    state: Any
    hp: dict[str, jax.Array]
    configs: int  # model-steps per training step


def hparams(setup: Setup, n_configs: int) -> tuple[dict, dict]:
    """(one config's hparams, a batch of `n_configs`): the benchmark grid's first configs."""
    many = grid.hparams_array(make_runs(setup, n_configs), n_configs)
    return {k: v[0] for k, v in many.items()}, many


def plain_and_vmapped(
    make_fns, task, estimator, setup: Setup, data, n_configs: int
) -> dict[str, Program]:
    """{"plain": jit(segment) on one config, "vmap(n)": jit(vmap(segment)) on n configs};
    `estimator` is what `make_fns` takes (a registry entry, or a name in older versions)."""
    # Older versions' make_fns has no schedules, hence no total_steps.
    length = {"total_steps": 10**6} if "total_steps" in signature(make_fns).parameters else {}
    if "test_at" in signature(make_fns).parameters:  # time the test split every segment
        length["test_at"] = "every"
    init, segment = make_fns(task, estimator, **length)
    one, many = hparams(setup, n_configs)
    batched = jax.vmap(segment, in_axes=(0, 0, None, None, None))
    return {
        "plain": Program(jax.jit(segment, static_argnums=4), jax.jit(init)(one, data), one, 1),
        f"vmap({n_configs})": Program(
            jax.jit(batched, static_argnums=4),
            jax.jit(jax.vmap(init, in_axes=(0, None)))(many, data),
            many,
            n_configs,
        ),
    }


def ms_per_model_step(programs: dict[Any, Program], data, steps: int, repeats: int) -> dict:
    """{key: milliseconds per model-step} of each program, timed in turn (module docstring).

    Segments donate nothing here, so the same state is timed again and again.
    """

    def seconds(p: Program, n: int) -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(p.fn(p.state, p.hp, data, jnp.int32(0), n))
        return time.perf_counter() - t0

    best = {}
    for key, p in programs.items():  # compile and warm up everything before timing anything
        for n in (steps, 2 * steps):
            seconds(p, n)
            best[key, n] = float("inf")
    for _ in range(repeats):
        for key, p in programs.items():
            for n in (steps, 2 * steps):
                best[key, n] = min(best[key, n], seconds(p, n))
    return {
        key: max(best[key, 2 * steps] - best[key, steps], 0.0) / steps / p.configs * 1e3
        for key, p in programs.items()
    }


def add_task_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", type=names, default=TASKS, help="comma list of tasks")
    p.add_argument("--quick", action="store_true", help="small shapes (CPU smoke run)")


def checked_tasks(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, ...]:
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}")
    return args.tasks
