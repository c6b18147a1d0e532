"""The grid: which runs a sweep trains, and how they are cut into equal-sized chunks."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from dst_jax.sweep.config import PAIRED_ESTIMATOR, SweepConfig


@dataclasses.dataclass(frozen=True)
class Run:
    """One configuration: an estimator, its temperatures, a seed and a learning rate."""

    estimator: str
    tau_f: float
    tau_b: float
    seed: int
    lr: float


def expand(sweep: SweepConfig, task_estimators, untempered=()) -> list[Run]:
    """All runs of a sweep, grouped by estimator, in a fixed order (resume relies on it)."""
    unknown = [e for e in sweep.estimators if e not in task_estimators]
    if unknown:
        raise ValueError(
            f"estimator(s) {', '.join(unknown)} not available for this task; "
            f"choose from {', '.join(task_estimators)}"
        )
    for name, values in (("tau_f", sweep.tau_f), ("tau_b", sweep.tau_b), ("lr", sweep.lrs)):
        bad = [v for v in values if not (math.isfinite(v) and v > 0)]
        if bad or not values:
            raise ValueError(
                f"--{name.replace('_', '-')} needs positive finite values, got {values}"
            )
    if sweep.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {sweep.seeds}")

    runs = []
    seeds = range(sweep.seeds)
    for est in sweep.estimators:
        if est == PAIRED_ESTIMATOR:
            pairs = list(itertools.product(sweep.tau_f, sweep.tau_b))
        elif est in untempered:
            pairs = [(1.0, 1.0)]
        else:
            pairs = [(t, t) for t in sweep.tau_f]
        for (tf, tb), lr, seed in itertools.product(pairs, sweep.lrs, seeds):
            runs.append(Run(est, float(tf), float(tb), int(seed), float(lr)))
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
