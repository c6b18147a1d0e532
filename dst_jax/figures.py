"""The figures of a finished sweep: learning curves, the comparison of every estimator's
selected config, temperature heatmaps and profiles through the best cell, histograms of the
best configs, and the figures a task declares (`TASK_FIGURES`). `write_figures` draws them all
from the sweep's report (`dst_jax.sweep.report`); `dst_jax.runner` calls it after a sweep and
`experiments.report --figures` from results.json; the drawing itself is `dst_jax.plotting`'s.

A task declares figures of its own in `extra_figures`: names in `TASK_FIGURES` (e.g. cae's
"code_grids") or callables `maker(task, chosen, results, out_dir) -> [file names]`, where
`chosen` maps each estimator to (its best config's figure arrays, a label of that config).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from dst_jax import estimators as estimator_lib
from dst_jax import plotting
from dst_jax.sweep import results
from dst_jax.sweep.report import SweepReport


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


def profiles(
    runs: list[dict[str, Any]],
    select: str,
    report: str,
    direction: str,
    title: str,
    best: dict[str, dict[str, Any]] | None = None,
):
    """For every two-temperature estimator, `select` and `report` along tau_f (tau_b at its
    best value) and along tau_b (tau_f at its best value), through the cell best by `select`
    (the report's `best` config; without it, the best cell of the grid); None when no
    estimator has a temperature grid."""
    metrics = tuple(dict.fromkeys((select, report)))
    panels = []
    for est in dict.fromkeys(r["estimator"] for r in runs):
        entry = estimator_lib.REGISTRY[est] if est in estimator_lib.REGISTRY else None
        if entry is None or entry.n_temperatures != 2:
            continue
        tfs, tbs, mean, ci = _grid_stats(runs, est, metrics, select, direction)
        if not np.isfinite(mean[select]).any():
            continue
        bi, bj = _cell_of(best, est, tfs, tbs) or results.best_cell(mean[select], direction)
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


def write_figures(
    task: Any,
    rep: SweepReport,
    results_dict: dict[str, Any],
    figure_arrays: list[dict[str, Any] | None],
    out_dir: str,
) -> list[str]:
    """Every figure of a sweep into `out_dir`, from its report; returns the file names.
    `figure_arrays` empty: figures redrawn from results.json (no code grids)."""
    from dst_jax.tasks.base import direction

    runs, best, select, report = list(rep.runs), dict(rep.best), rep.select, rep.report
    written = []
    if rep.confirmation is None:  # a confirmation's few cells make no temperature map
        written += heatmaps(task, runs, select, out_dir, best)
    title = f"{task.name} ({results_dict['dataset']})"
    for name, fig in (
        ("curves.png", curves(runs, best, select, report)),
        ("comparison.png", comparison(runs, best, select, report, direction(task, report), title)),
        (
            "profiles.png",
            None
            if rep.confirmation is not None
            else profiles(runs, select, report, rep.direction, title, best),
        ),
    ):
        if fig is not None:
            plotting.save(fig, os.path.join(out_dir, name))
            written.append(name)
    written += task_figures(task, results_dict, best, figure_arrays, out_dir)
    return written


def _cell_of(
    best: dict[str, dict[str, Any]] | None, est: str, tfs: list[float], tbs: list[float]
) -> tuple[int, int] | None:
    """(row, column) of the estimator's best config (the report's) on its grid, if known."""
    row = (best or {}).get(est)
    if row is None or row["tau_f"] not in tfs or row["tau_b"] not in tbs:
        return None
    return tfs.index(row["tau_f"]), tbs.index(row["tau_b"])


def heatmaps(
    task: Any,
    runs: list[dict[str, Any]],
    select: str,
    out_dir: str,
    best: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """`heatmap_<estimator>_<metric>.png` for every two-temperature estimator of the sweep and
    every heatmap metric of the task; the starred cell is the best config by `select` (the
    report's `best`; without it, the best cell of the grid)."""
    from dst_jax.tasks.base import direction

    written = []
    sel_dir = direction(task, select)
    for est in dict.fromkeys(r["estimator"] for r in runs):
        if est not in estimator_lib.REGISTRY or estimator_lib.REGISTRY[est].n_temperatures != 2:
            continue
        tfs, tbs, sel = results.heatmap_grid(runs, select, sel_dir, est)
        if sel.size == 0 or not (sel == sel).any():
            continue
        star = _cell_of(best, est, tfs, tbs) or results.best_cell(sel, sel_dir)
        for metric in task.heatmap_metrics:
            _, _, mat = results.heatmap_grid(runs, metric, sel_dir, est, select=select)
            title = f"{est}: {metric} (mean over seeds); star: selected by {select}"
            fig = plotting.heatmap(tfs, tbs, mat, star, direction(task, metric), metric, title)
            name = f"heatmap_{est}_{metric}.png"
            plotting.save(fig, os.path.join(out_dir, name))
            written.append(name)
    return written


def code_grids(
    task: Any, chosen: dict[str, tuple[dict[str, Any], str]], results_dict: Any, out_dir: str
) -> list[str]:
    """`codes_<estimator>.png`: what each code of the best config decodes to (the task's
    `code_grid` figure array, (L, C, D); absent when redrawn from results.json)."""
    written = []
    for est, (arrays, what) in chosen.items():
        if "code_grid" in arrays:
            name = f"codes_{est}.png"
            fig = plotting.code_grid(
                arrays["code_grid"], f"{task.name}: decoded codes, best {what}"
            )
            plotting.save(fig, os.path.join(out_dir, name))
            written.append(name)
    return written


# The figures a task may declare by name in its `extra_figures`.
TASK_FIGURES: dict[str, Callable[..., list[str]]] = {"code_grids": code_grids}


def task_figures(
    task: Any,
    results_dict: dict[str, Any],
    best: dict[str, dict[str, Any]],
    figure_arrays: list[dict[str, Any] | None],
    out_dir: str,
) -> list[str]:
    """Figures from the task's arrays, for the best config of each estimator (its lowest seed
    that did not diverge): `<name>.png` for each of the task's `histograms` (e.g.
    `gate_hist.png`), then the task's `extra_figures` (module docstring)."""
    from dst_jax.tasks import common

    runs = results_dict["runs"]
    chosen: dict[str, tuple[dict[str, Any], str]] = {}
    for est, row in best.items():
        index = (results.run_indices(runs, row, finished=True) or results.run_indices(runs, row))[0]
        # Without the training's arrays (figures redrawn from results.json, or a run reused from
        # an earlier sweep: None), the histograms come from the run's final metrics and the code
        # grids keep their earlier files.
        arrays = figure_arrays[index] if figure_arrays else None
        if arrays is None:
            arrays = dict(runs[index]["final"])
        chosen[est] = (arrays, f"{label(row)}, seed {runs[index]['seed']}")
    written = []
    for name, bins in task.histograms.items():
        bars = {}
        for arrays, what in chosen.values():
            if arrays.get(name) is not None:
                hist = np.asarray(arrays[name])
                bars[f"{what}, perplexity {float(common.perplexity(hist)):.2f}"] = hist
        if not bars:
            continue
        title = f"{task.name}: {name} of the best config per estimator ({results_dict['dataset']})"
        plotting.save(
            plotting.histograms(bars, bins, title, "fraction"), os.path.join(out_dir, f"{name}.png")
        )
        written.append(f"{name}.png")
    for maker in getattr(task, "extra_figures", ()):
        make = TASK_FIGURES[maker] if isinstance(maker, str) else maker
        written += make(task, chosen, results_dict, out_dir)
    return written
