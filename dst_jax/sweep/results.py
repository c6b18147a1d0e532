"""A sweep's runs as data: run records, the table of configs over seeds, and the one rule that
picks the best config.

The rule, used by every summary, table, figure and refinement step: a config is a set of
hyperparameters (`CONFIG_KEYS`) over its seeds; its score is the mean over its finite seeds of
the selection metric; the best config of an estimator has the best score in the metric's
direction (larger for "max", smaller for "min"). NaN scores never win. A run that successive
halving stopped before the last rung (`stopped: true`, `dst_jax.sweep.halving`) is left out of
the config table, so every best, table and comparison is among runs trained to the end.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from dst_jax import provenance
from dst_jax.sweep import stats
from dst_jax.sweep.grid import Run

CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(Run) if f.name != "seed")
# Records written before a hyperparameter existed, or by hand, hold its default.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Run)}


def json_number(x) -> float | int | bool | None:
    """A JSON value for a numpy/python scalar; non-finite floats become null (the project's one
    JSON rule, `provenance.json_safe`)."""
    return provenance.json_safe(x.item() if hasattr(x, "item") else x)


def json_value(a) -> Any:
    return provenance.json_safe(np.asarray(a))


def run_records(
    runs: Sequence[Run],
    curves: Sequence[dict[str, Any]],
    diverged: np.ndarray,
    diverged_step: np.ndarray,
) -> list[dict[str, Any]]:
    """The results.json record of each run of a chunk.

    `curves` holds one dict per evaluation: {"step": int, metric: per-config values (JSON
    lists)}. A run's `final` holds every metric at the last evaluation (non-scalar ones as
    lists); its `curve` the scalar metrics over evaluations.
    """
    records = []
    for i, run in enumerate(runs):
        final = {name: v[i] for name, v in curves[-1].items() if name != "step"}
        scalar = [n for n, v in final.items() if not isinstance(v, list)]
        curve = {"step": [c["step"] for c in curves]}
        curve.update({n: [c[n][i] for c in curves] for n in scalar})
        records.append(
            {
                **dataclasses.asdict(run),
                "diverged": bool(diverged[i]),
                "diverged_step": int(diverged_step[i]) if diverged[i] else None,
                "final": final,
                "curve": curve,
            }
        )
    return records


# How a results file's `train_*` metrics were measured: on the minibatch of the evaluation's step
# (`TRAIN_METRICS`, recorded as results["train_metrics"]), or, in results written before that
# record existed, as the mean over the evaluation interval. Runs of the two are not mixed unawares.
TRAIN_METRICS = "last_step"
TRAIN_METRICS_BEFORE = "interval_mean"


def train_metrics_of(res: dict[str, Any]) -> str:
    """How the `train_*` metrics of a results dict were measured."""
    return res.get("train_metrics", TRAIN_METRICS_BEFORE)


def config_key(run: dict[str, Any]) -> tuple:
    return tuple(run.get(k, _DEFAULTS[k]) for k in CONFIG_KEYS)


def group_by_config(runs: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Runs grouped by config (`CONFIG_KEYS`): one group holds the seeds of a config."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[config_key(r)].append(r)
    return dict(groups)


def config_table(runs: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per config: its keys, seeds, diverged count, and for each final metric its
    summary over seeds (`<m>_mean`, `<m>_std` with ddof = 1, `<m>_ci` the 95% half-width).

    A config with a diverged seed keeps its row; its statistics are over the finite seeds and
    `n_diverged` says how many were lost. Runs stopped by successive halving have no row.
    """
    rows = []
    runs = [r for r in runs if not r.get("stopped")]
    for key, group in group_by_config(runs).items():
        row: dict[str, Any] = dict(zip(CONFIG_KEYS, key, strict=True))
        row["n_seeds"] = len(group)
        row["n_diverged"] = sum(bool(r["diverged"]) for r in group)
        row["seeds"] = sorted(r["seed"] for r in group)
        for m in metrics:
            s = stats.summarize([r["final"].get(m) for r in group if not r["diverged"]])
            row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_ci"] = s.mean, s.std, s.ci
        rows.append(row)
    return rows


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def best_per_estimator(
    runs: list[dict[str, Any]], select: str, direction: str, metrics: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """The best config of each estimator by mean `select` over seeds (the module's rule), as
    `config_table` rows carrying `metrics` too."""
    metrics = tuple(dict.fromkeys((select, *metrics)))
    best: dict[str, dict[str, Any]] = {}
    for row in config_table(runs, metrics):
        score = row[f"{select}_mean"]
        if not math.isfinite(score):
            continue
        cur = best.get(row["estimator"])
        if cur is None or _better(score, cur[f"{select}_mean"], direction):
            best[row["estimator"]] = row
    return best


def run_indices(
    runs: list[dict[str, Any]], row: dict[str, Any], finished: bool = False
) -> list[int]:
    """Positions in `runs` of the runs (seeds) of a table row's config, lowest seed first;
    `finished`: only those that did not diverge (what the tables average)."""
    key = tuple(row[k] for k in CONFIG_KEYS)
    found = [
        i for i, r in enumerate(runs) if config_key(r) == key and not (finished and r["diverged"])
    ]
    return sorted(found, key=lambda i: runs[i]["seed"])


def runs_of(
    runs: list[dict[str, Any]], row: dict[str, Any], finished: bool = False
) -> list[dict[str, Any]]:
    """The runs (seeds) of the config of a table row, lowest seed first (`finished`: as in
    `run_indices`)."""
    return [runs[i] for i in run_indices(runs, row, finished)]


def heatmap_grid(
    runs: list[dict[str, Any]], metric: str, direction: str, estimator: str, select: str = ""
) -> tuple[list[float], list[float], np.ndarray]:
    """(tau_f values, tau_b values, mean-over-seeds matrix [tau_f, tau_b]) of `estimator`.

    Where a cell holds several configs (e.g. learning rates), it shows the one that is best by
    `select` (default: `metric` itself), following the module's rule.
    """
    select = select or metric
    rows = [r for r in config_table(runs, (metric, select)) if r["estimator"] == estimator]
    tfs = sorted({r["tau_f"] for r in rows})
    tbs = sorted({r["tau_b"] for r in rows})
    mat = np.full((len(tfs), len(tbs)), np.nan)
    chosen: dict[tuple, float] = {}
    for r in rows:
        cell = (r["tau_f"], r["tau_b"])
        score = r[f"{select}_mean"]
        if not math.isfinite(score):
            continue
        if cell not in chosen or _better(score, chosen[cell], direction):
            chosen[cell] = score
            mat[tfs.index(cell[0]), tbs.index(cell[1])] = r[f"{metric}_mean"]
    return tfs, tbs, mat


def best_cell(mat: np.ndarray, direction: str) -> tuple[int, ...]:
    """Index of the best cell of `mat`, a grid of any rank ((row, column) of a (tau_f, tau_b)
    grid); NaN cells never win."""
    flat = np.where(np.isnan(mat), -np.inf if direction == "max" else np.inf, mat)
    best = np.argmax(flat) if direction == "max" else np.argmin(flat)
    return tuple(int(i) for i in np.unravel_index(best, mat.shape))


def seed_values(runs: list[dict[str, Any]], row: dict[str, Any], metric: str) -> dict[int, float]:
    """{seed: final metric} of the finite, non-diverged runs of a table row's config."""
    out = {}
    for r in runs_of(runs, row):
        v = r["final"].get(metric)
        if not r["diverged"] and v is not None and math.isfinite(v):
            out[r["seed"]] = v
    return out


def compare(
    runs: list[dict[str, Any]], a: dict[str, Any], b: dict[str, Any], metric: str, direction: str
) -> stats.Paired:
    """Config `a` against config `b` (table rows) on `metric`, seed by seed: a - b."""
    return stats.paired(seed_values(runs, a, metric), seed_values(runs, b, metric), direction)


def best_diagonal(
    runs: list[dict[str, Any]], estimator: str, select: str, direction: str, metrics=()
) -> dict[str, Any] | None:
    """The best config of `estimator` with tau_f == tau_b (the module's rule), or None."""
    diagonal = [r for r in runs if r["estimator"] == estimator and r["tau_f"] == r["tau_b"]]
    return best_per_estimator(diagonal, select, direction, metrics).get(estimator)


def optimum_position(
    runs: list[dict[str, Any]], best: dict[str, Any], axes: Sequence[str]
) -> dict[str, str]:
    """For each temperature axis, where the best config lies among that estimator's values:
    "interior", "low edge" or "high edge" (or "single value" for a one-point axis)."""
    out = {}
    for axis in axes:
        values = sorted({r[axis] for r in runs if r["estimator"] == best["estimator"]})
        if len(values) < 2:
            out[axis] = "single value"
        elif best[axis] == values[0]:
            out[axis] = "low edge"
        elif best[axis] == values[-1]:
            out[axis] = "high edge"
        else:
            out[axis] = "interior"
    return out
