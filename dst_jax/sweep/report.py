"""The report of a sweep, computed once: what every output of a finished sweep reads.

`build_report(task, results)` applies the rule of `dst_jax.sweep.results` once: each
estimator's best config (by mean over seeds of the selection metric), each two-temperature
estimator's best diagonal cell (tau_f == tau_b), the paired comparisons between them (seed by
seed on the reported metric, Holm-adjusted), and where each optimum lies on its temperature
grid. `dst_jax.summary` renders it as Markdown, `dst_jax.figures` draws from its best configs,
`dst_jax.sweep.refine` extends the grids whose optimum is on an edge, and `experiments.report`
prints it; none of them selects again.

A confirmation (`dst_jax.confirm`) selects nothing: its `best` are the configs the screen chose,
and its comparisons are `confirm.confirmation_summary`'s (on the fresh seeds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from dst_jax import estimators as estimator_lib
from dst_jax.sweep import results, stats
from dst_jax.sweep.stats import Paired

Row = dict[str, Any]  # a `results.config_table` row: a config with its metrics over seeds


def registry_entry(name: str) -> estimator_lib.Estimator | None:
    """The estimator's registry entry; None for one this installation does not register."""
    return estimator_lib.REGISTRY[name] if name in estimator_lib.REGISTRY else None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Config `a` against config `b` on the reported metric, seed by seed (a - b).

    `kind`: "reference" (the reference estimator's best against another estimator's best) or
    "diagonal" (an estimator's best cell against its best diagonal cell). `p` is the paired
    t-test's two-sided p-value, `p_holm` the same Holm-adjusted over the report's comparisons.
    """

    kind: str
    a: Row
    b: Row
    paired: Paired
    p: float
    p_holm: float


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """Everything the outputs of a sweep say about its results (module docstring).

    `select` picks the best configs (direction `direction`), `report` is the metric reported
    for them; `metrics` are the ones the tables show; `estimators` in the order the sweep ran
    them. `diagonal_is_best` lists the two-temperature estimators whose best cell lies on the
    diagonal (no comparison is made for them). `optima[est][axis]` is "interior", "low edge",
    "high edge" or "single value". `rungs`: the halving rungs' steps (None without halving).
    """

    runs: Sequence[Row]
    select: str
    report: str
    direction: str
    metrics: tuple[str, ...]
    estimators: tuple[str, ...]
    best: Mapping[str, Row]
    diagonals: Mapping[str, Row]
    comparisons: tuple[Comparison, ...]
    diagonal_is_best: tuple[str, ...]
    optima: Mapping[str, Mapping[str, str]]
    rungs: tuple[int, ...] | None = None
    confirmation: Mapping[str, Any] | None = None

    def on_edge(self, estimator: str) -> bool:
        """Whether the estimator's optimum lies on an edge of one of its temperature axes."""
        return any(p in ("low edge", "high edge") for p in self.optima.get(estimator, {}).values())


def selection(
    task: Any, config: Mapping[str, Any], select_on: str | None = None
) -> tuple[str, str]:
    """(select, report) of a results config: the metric that picks the best config (the
    headline metric on the selection split, `select_on` or the sweep's) and the one reported
    for it (on the test split)."""
    split = select_on or config["sweep"].get("select_on", "val")
    return f"{split}_{task.headline_metric}", f"test_{task.headline_metric}"


def table_metrics(task: Any, select: str, report: str) -> tuple[str, ...]:
    """The metrics a sweep's tables show: selection, reported, the task's heatmap metrics and
    the training loss."""
    return tuple(dict.fromkeys((select, report, *task.heatmap_metrics, "train_loss")))


def build_report(task: Any, res: Mapping[str, Any], select_on: str | None = None) -> SweepReport:
    """The report of a results dict (`results.json`) of `task`; `select_on` ("val" or
    "test") overrides the split the sweep selected on."""
    from dst_jax.tasks.base import direction

    select, report = selection(task, res["config"], select_on)
    runs = res["runs"]
    return compute(
        runs,
        select,
        report,
        direction(task, select),
        table_metrics(task, select, report),
        rungs=res["config"].get("halving", {}).get("rungs"),
        confirmation=res.get("confirmation"),
    )


def compute(
    runs: Sequence[Row],
    select: str,
    report: str,
    direction: str,
    metrics: Sequence[str],
    estimators: Sequence[str] | None = None,
    *,
    rungs: Sequence[int] | None = None,
    confirmation: Mapping[str, Any] | None = None,
    reference: str = estimator_lib.REFERENCE,
    best: Mapping[str, Row] | None = None,
) -> SweepReport:
    """The report of `runs` (records of `results.json`) selected by `select` in `direction`
    (`best`: these best configs instead of selecting them)."""
    runs = list(runs)
    metrics = tuple(metrics)
    if estimators is None:
        estimators = list(dict.fromkeys(r["estimator"] for r in runs))
    if best is not None:
        best = dict(best)
    elif confirmation is not None:
        best = chosen_best(runs, confirmation["configs"], (report, select, *metrics))
    else:
        best = results.best_per_estimator(runs, select, direction, metrics)
    diagonals: dict[str, Row] = {}
    # A confirmation compares the screen's choices on fresh seeds (`confirm`), not these.
    for est in best if confirmation is None else ():
        entry = registry_entry(est)
        if entry is not None and entry.n_temperatures == 2:
            diag = results.best_diagonal(runs, est, select, direction)
            if diag is not None:
                diagonals[est] = diag
    pairs: list[tuple[str, Row, Row]] = []
    ref = best.get(reference)
    if ref is not None and confirmation is None:
        pairs += [("reference", ref, row) for est, row in best.items() if est != reference]
    on_diagonal = []
    for est, row in best.items():
        diag = diagonals.get(est)
        if diag is None:
            continue
        if (diag["tau_f"], diag["tau_b"]) != (row["tau_f"], row["tau_b"]):
            pairs.append(("diagonal", row, diag))
        else:
            on_diagonal.append(est)
    p_values = [
        stats.paired_t_p(results.seed_values(runs, a, report), results.seed_values(runs, b, report))
        for _, a, b in pairs
    ]
    comparisons = tuple(
        Comparison(kind, a, b, results.compare(runs, a, b, report, direction), p, p_holm)
        for (kind, a, b), p, p_holm in zip(pairs, p_values, stats.holm(p_values), strict=True)
    )
    optima = {}
    for est, row in best.items():
        entry = registry_entry(est)
        if entry is not None and entry.axes:
            optima[est] = results.optimum_position(runs, row, entry.axes)
    return SweepReport(
        runs=runs,
        select=select,
        report=report,
        direction=direction,
        metrics=metrics,
        estimators=tuple(estimators),
        best=best,
        diagonals=diagonals,
        comparisons=comparisons,
        diagonal_is_best=tuple(on_diagonal),
        optima=optima,
        rungs=tuple(rungs) if rungs else None,
        confirmation=confirmation,
    )


def chosen_best(
    runs: Sequence[Row], chosen: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> dict[str, Row]:
    """Each estimator's config as a screen selected it (a confirmation's configs of role
    "selected", `dst_jax.confirm`), as a `config_table` row of `runs`."""
    table = {
        results.config_key(row): row
        for row in results.config_table(list(runs), tuple(dict.fromkeys(metrics)))
    }
    out = {}
    for c in chosen:
        row = table.get(results.config_key(dict(c))) if c["role"] == "selected" else None
        if row is not None:
            out[c["estimator"]] = row
    return out


def selection_shift(on_val: SweepReport, on_test: SweepReport) -> list[tuple[str, Row, Row]]:
    """(estimator, best selected on validation, best selected on test) for each estimator both
    reports select, in the order of `on_val`."""
    return [
        (est, row, on_test.best[est]) for est, row in on_val.best.items() if est in on_test.best
    ]
