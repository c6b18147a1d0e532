"""Summaries of a sweep's runs: best configuration per estimator, mean and std over seeds."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

CONFIG_KEYS = ("estimator", "tau_f", "tau_b", "lr")


def _stats(values: list[float | None]) -> tuple[float, float, int]:
    """Mean, std (ddof=0) and count of the finite values; (nan, nan, 0) if none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    return float(np.mean(finite)), float(np.std(finite)), len(finite)


def group_by_config(runs: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Runs grouped by (estimator, tau_f, tau_b, lr): one group holds the seeds of a config."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[tuple(r[k] for k in CONFIG_KEYS)].append(r)
    return dict(groups)


def config_table(runs: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per config: its keys, seeds, diverged count, and mean/std of each final metric.

    A config with a diverged seed keeps its row; its mean is over the finite seeds and
    `n_diverged` says how many were lost.
    """
    rows = []
    for key, group in group_by_config(runs).items():
        row: dict[str, Any] = dict(zip(CONFIG_KEYS, key, strict=True))
        row["n_seeds"] = len(group)
        row["n_diverged"] = sum(bool(r["diverged"]) for r in group)
        for m in metrics:
            values = [r["final"].get(m) for r in group if not r["diverged"]]
            row[f"{m}_mean"], row[f"{m}_std"], _ = _stats(values)
        rows.append(row)
    return rows


def best_per_estimator(
    runs: list[dict[str, Any]], metric: str, direction: str, metrics: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """The config with the best mean `metric` over seeds, for each estimator."""
    if metric not in metrics:
        metrics = (metric, *metrics)
    sign = 1.0 if direction == "max" else -1.0
    best: dict[str, dict[str, Any]] = {}
    for row in config_table(runs, metrics):
        score = row[f"{metric}_mean"]
        if not math.isfinite(score):
            continue
        cur = best.get(row["estimator"])
        if cur is None or sign * score > sign * cur[f"{metric}_mean"]:
            best[row["estimator"]] = row
    return best


def format_summary(
    best: dict[str, dict[str, Any]], metrics: tuple[str, ...], estimators: list[str]
) -> str:
    """A Markdown table: the best config per estimator with mean +- std of each metric."""
    head = ["estimator", "tau_f", "tau_b", "lr", "seeds"] + list(metrics)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for est in estimators:
        row = best.get(est)
        if row is None:
            lines.append(f"| {est} | " + " | ".join(["-"] * (len(head) - 1)) + " |")
            continue
        cells = [
            est,
            f"{row['tau_f']:g}",
            f"{row['tau_b']:g}",
            f"{row['lr']:g}",
            f"{row['n_seeds'] - row['n_diverged']}/{row['n_seeds']}",
        ]
        for m in metrics:
            cells.append(f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
