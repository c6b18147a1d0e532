"""The figures of a finished sweep that are drawn from its results alone: learning curves, the
comparison of every estimator's selected config, and temperature profiles through the best
cell. `dst_jax.runner` writes them after a sweep and `experiments.report --figures` rewrites
them from results.json; the drawing itself is `dst_jax.plotting`'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dst_jax import estimators as estimator_lib
from dst_jax import plotting
from dst_jax.sweep import results


def taus_of(row: dict[str, Any]) -> dict[str, float]:
    """The temperatures a config's estimator uses, by name (none for an untempered one)."""
    entry = (
        estimator_lib.REGISTRY[row["estimator"]]
        if row["estimator"] in estimator_lib.REGISTRY
        else None
    )
    if entry is not None and entry.n_temperatures == 0:
        return {}
    if entry is not None and entry.n_temperatures == 1:
        return {"tau": row[entry.writes_tau_to[0]]}
    return {"tau_f": row["tau_f"], "tau_b": row["tau_b"]}


def label(row: dict[str, Any], runs: list[dict[str, Any]] | None = None) -> str:
    """`decoupled_st (tau_f=0.1, tau_b=0.3)`; the learning rate too when the sweep has several."""
    taus = taus_of(row)
    if runs is not None and len({r["lr"] for r in runs if r["estimator"] == row["estimator"]}) > 1:
        taus = {**taus, "lr": row["lr"]}
    return plotting.config_label(row["estimator"], taus)


def curves(runs: list[dict[str, Any]], best: dict[str, dict[str, Any]], select: str, report: str):
    """Learning curves of each estimator's selected config (training loss, the selection and
    the reported metric), or None when no config has a finished run."""
    groups = {label(row, runs): results.runs_of(runs, row, finished=True) for row in best.values()}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return None
    titles = {
        "train_loss": "training loss (minibatch)",
        select: f"{select}: picks the config",
        report: f"{report}: the reported number",
    }
    if select == report:
        titles[select] = f"{select}: picks the config and is reported"
    return plotting.curves(groups, tuple(dict.fromkeys(("train_loss", select, report))), titles)


def comparison(
    runs: list[dict[str, Any]],
    best: dict[str, dict[str, Any]],
    select: str,
    report: str,
    report_direction: str,
    title: str,
):
    """Dot-and-whisker chart of every estimator's selected config on `report`, or None."""
    rows = []
    for row in best.values():
        values = list(results.seed_values(runs, row, report).values())
        if not values:
            continue
        rows.append(
            {
                "label": label(row, runs),
                "values": values,
                "mean": row[f"{report}_mean"],
                "ci": row[f"{report}_ci"],
            }
        )
    if not rows:
        return None
    seeds = max(len(r["values"]) for r in rows)
    head = f"{title}\n{report} of each estimator's config selected by {select}: " + (
        f"mean and 95% interval over {seeds} seeds (grey: each seed)"
        if seeds > 1
        else "one seed, no interval"
    )
    return plotting.comparison(rows, report, report_direction, head)


def _grid_stats(
    runs: list[dict[str, Any]], estimator: str, metrics: tuple[str, ...], select: str, direction
) -> tuple[list[float], list[float], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(tau_f values, tau_b values, mean and CI half-width matrices per metric) of
    `estimator`'s grid; where a cell holds several configs, the one best by `select` (the rule
    of `results.heatmap_grid`)."""
    table = results.config_table(runs, tuple(dict.fromkeys((select, *metrics))))
    rows = [r for r in table if r["estimator"] == estimator]
    tfs = sorted({r["tau_f"] for r in rows})
    tbs = sorted({r["tau_b"] for r in rows})
    mean = {m: np.full((len(tfs), len(tbs)), np.nan) for m in metrics}
    ci = {m: np.full((len(tfs), len(tbs)), np.nan) for m in metrics}
    chosen: dict[tuple, float] = {}
    for r in rows:
        cell, score = (r["tau_f"], r["tau_b"]), r[f"{select}_mean"]
        if not math.isfinite(score):
            continue
        if cell in chosen and not (
            score > chosen[cell] if direction == "max" else score < chosen[cell]
        ):
            continue
        chosen[cell] = score
        i, j = tfs.index(cell[0]), tbs.index(cell[1])
        for m in metrics:
            mean[m][i, j], ci[m][i, j] = r[f"{m}_mean"], r[f"{m}_ci"]
    return tfs, tbs, mean, ci


def profiles(runs: list[dict[str, Any]], select: str, report: str, direction: str, title: str):
    """For every two-temperature estimator, `select` and `report` along tau_f (tau_b at its
    best value) and along tau_b (tau_f at its best value), through the cell best by `select`;
    None when no estimator has a temperature grid."""
    metrics = tuple(dict.fromkeys((select, report)))
    panels = []
    for est in dict.fromkeys(r["estimator"] for r in runs):
        entry = estimator_lib.REGISTRY[est] if est in estimator_lib.REGISTRY else None
        if entry is None or entry.n_temperatures != 2:
            continue
        tfs, tbs, mean, ci = _grid_stats(runs, est, metrics, select, direction)
        if not np.isfinite(mean[select]).any():
            continue
        bi, bj = results.best_cell(mean[select], direction)
        for axis, values, fixed, take in (
            ("tau_f", tfs, f"tau_b={tbs[bj]:g}", lambda a, bj=bj: a[:, bj]),
            ("tau_b", tbs, f"tau_f={tfs[bi]:g}", lambda a, bi=bi: a[bi, :]),
        ):
            if len(values) < 2:
                continue
            x = np.asarray(values, float)
            keep = np.isfinite(take(mean[select]))
            panels.append(
                {
                    "title": f"{est}: along {axis}, {fixed}",
                    "xlabel": f"{axis} ({'forward' if axis == 'tau_f' else 'backward'} "
                    "temperature)",
                    "ylabel": "mean over seeds ("
                    + ("higher" if direction == "max" else "lower")
                    + " is better)",
                    "x": x[keep],
                    "best_x": tfs[bi] if axis == "tau_f" else tbs[bj],
                    "lines": [
                        {"label": m, "mean": take(mean[m])[keep], "ci": take(ci[m])[keep]}
                        for m in metrics
                    ],
                }
            )
    if not panels:
        return None
    seeds = max((r["seed"] for r in runs), default=0) + 1
    band = "; band: 95% interval over seeds" if seeds > 1 else "; one seed, no interval"
    return plotting.profiles(panels, f"{title}\nprofiles through the cell best by {select}{band}")
