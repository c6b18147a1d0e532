"""The grid: which runs a sweep trains, and how they are cut into equal-sized chunks.

The estimator registry (`dst_jax.estimators.REGISTRY`) decides each estimator's axes: a 2-D
(tau_f, tau_b) grid for estimators that read both temperatures, one axis for single-temperature
estimators, a single point for untempered ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from dst_jax import estimators as estimator_lib
from dst_jax.sweep.config import SweepConfig


@dataclasses.dataclass(frozen=True)
class Run:
    """One configuration: an estimator, its temperatures, a seed and a learning rate."""

    estimator: str
    tau_f: float
    tau_b: float
    seed: int
    lr: float


def accepted_estimators(task) -> tuple[str, ...]:
    """Registered estimators `task` can train: every sampling one, and relaxations if the task
    accepts them."""
    return tuple(e.name for e in estimator_lib.REGISTRY if e.discrete or task.accepts_relaxation)


def temperature_pairs(entry: estimator_lib.Estimator, sweep: SweepConfig) -> list[tuple]:
    """The (tau_f, tau_b) cells of one estimator, from its registry entry."""
    if entry.n_temperatures == 2:
        return list(itertools.product(sweep.tau_f, sweep.tau_b))
    if entry.n_temperatures == 1:
        return list(dict.fromkeys(entry.temperatures_of(t) for t in sweep.tau_f))
    return [(1.0, 1.0)]


def expand(sweep: SweepConfig, task) -> list[Run]:
    """All runs of a sweep, grouped by estimator, in a fixed order (resume relies on it)."""
    accepted = accepted_estimators(task)
    names = sweep.estimators if sweep.estimators is not None else accepted
    unknown = [e for e in names if e not in accepted]
    if unknown:
        raise ValueError(
            f"estimator(s) {', '.join(unknown)} not available for the {task.name} task; "
            f"choose from {', '.join(accepted)}"
        )
    for name, values in (("tau_f", sweep.tau_f), ("tau_b", sweep.tau_b), ("lr", sweep.lrs)):
        bad = [v for v in values if not (math.isfinite(v) and v > 0)]
        if bad or not values:
            raise ValueError(
                f"--{name.replace('_', '-')} needs positive finite values, got {values}"
            )
    if sweep.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {sweep.seeds}")
    estimator_lib.check_temperatures(tau_f=np.array(sweep.tau_f), tau_b=np.array(sweep.tau_b))

    runs = []
    for name in names:
        pairs = temperature_pairs(estimator_lib.REGISTRY[name], sweep)
        for (tf, tb), lr, seed in itertools.product(pairs, sweep.lrs, range(sweep.seeds)):
            runs.append(Run(name, float(tf), float(tb), int(seed), float(lr)))
    return runs


def chunks(n_runs: int, chunk_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive chunks; the last may be short (it gets padded)."""
    return [(s, min(s + chunk_size, n_runs)) for s in range(0, n_runs, chunk_size)]


def hparams_array(runs: list[Run], size: int) -> dict[str, np.ndarray]:
    """Per-config hyperparameters as arrays of length `size`, padded by repeating the last run.

    Padding configs are real computations whose results are dropped; repeating a real config
    keeps them numerically harmless.
    """
    if not runs:
        raise ValueError("a chunk needs at least one run")
    padded = list(runs) + [runs[-1]] * (size - len(runs))
    return {
        "tau_f": np.array([r.tau_f for r in padded], np.float32),
        "tau_b": np.array([r.tau_b for r in padded], np.float32),
        "lr": np.array([r.lr for r in padded], np.float32),
        "seed": np.array([r.seed for r in padded], np.int32),
    }
