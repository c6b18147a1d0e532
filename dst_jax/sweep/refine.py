"""Adaptive grids: extend a temperature axis whose optimum lies on its edge.

After a round of training, for each estimator the best config (the rule of `results`, on the
selection metric) is located on each of the estimator's temperature axes: the optimum
positions of the round's report (`dst_jax.sweep.report`). Where it lies on the
lowest or highest value, the axis gets the next value beyond that edge, geometrically:
`edge^2 / neighbour` (0.1 after 0.2 gives 0.05), rounded to 6 significant digits and kept
within the estimators' temperature range. The new cells are every combination of the extended
axes not trained yet, each with every other hyperparameter value (learning rates, schedules,
seeds) the estimator's runs have. A round adds nothing once every optimum is interior.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from dst_jax import estimators as estimator_lib
from dst_jax.sweep import report as report_lib
from dst_jax.sweep.grid import Run
from dst_jax.sweep.report import SweepReport


def beyond(values: Sequence[float], edge: str) -> float | None:
    """The next value past the low or high edge of sorted `values` (module docstring), or None
    if there is none (a single value, or the temperature range's end)."""
    if len(values) < 2:
        return None
    v = values[0] ** 2 / values[1] if edge == "low edge" else values[-1] ** 2 / values[-2]
    v = float(f"{v:.6g}")
    return v if estimator_lib.TAU_MIN <= v <= estimator_lib.TAU_MAX else None


def new_runs(
    records: list[dict[str, Any]], trained: Sequence[Run], select: str, direction: str
) -> list[Run]:
    """The runs of the next refinement round, in a fixed order (resume relies on it).

    `records` are the results of every run trained so far (`trained`, in the same order).
    """
    rep = report_lib.compute(records, select, select, direction, ())
    return runs_beyond_edges(rep, trained)


def runs_beyond_edges(rep: SweepReport, trained: Sequence[Run]) -> list[Run]:
    """The new runs past every edge on which one of the report's optima lies (`new_runs`)."""
    added: list[Run] = []
    for est, position in rep.optima.items():
        entry = estimator_lib.REGISTRY[est]
        own = [r for r in trained if r.estimator == est]
        if not own:
            continue
        values = {axis: sorted({getattr(r, axis) for r in own}) for axis in entry.axes}
        grew = False
        for axis in entry.axes:
            if position[axis] in ("low edge", "high edge"):
                v = beyond(values[axis], position[axis])
                if v is not None and v not in values[axis]:
                    values[axis] = sorted([*values[axis], v])
                    grew = True
        if not grew:
            continue
        # Every other hyperparameter combination the estimator was trained with, per cell.
        rest = list(dict.fromkeys(_rest(r) for r in own))
        cells = {(r.tau_f, r.tau_b) for r in own}
        candidates: Iterable[tuple[float, float]]
        if entry.n_temperatures == 2:
            candidates = itertools.product(values["tau_f"], values["tau_b"])
        else:
            candidates = (entry.temperatures_of(t) for t in values[entry.axes[0]])
        for tf, tb in candidates:
            if (tf, tb) in cells:
                continue
            for other in rest:
                added.append(Run(estimator=est, tau_f=tf, tau_b=tb, **dict(other)))
    return added


def _rest(run: Run) -> tuple:
    """A run's fields other than its temperatures, as a hashable tuple of items."""
    return tuple(
        (k, v)
        for k, v in dataclasses.asdict(run).items()
        if k not in ("estimator", "tau_f", "tau_b")
    )
