"""Figures of a sweep: (tau_f, tau_b) heatmaps and learning curves, written as PNG."""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dst_jax.io import atomic_open  # noqa: E402
from dst_jax.sweep.results import config_table  # noqa: E402


def save(fig, path: str) -> str:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def heatmap_grid(
    runs: list[dict[str, Any]], metric: str, direction: str, estimator: str = "decoupled_st"
) -> tuple[list[float], list[float], np.ndarray]:
    """(tau_f values, tau_b values, mean-over-seeds matrix [tau_f, tau_b]); best lr per cell."""
    rows = [r for r in config_table(runs, (metric,)) if r["estimator"] == estimator]
    tfs = sorted({r["tau_f"] for r in rows})
    tbs = sorted({r["tau_b"] for r in rows})
    pick = np.nanmax if direction == "max" else np.nanmin
    cells: dict[tuple, list[float]] = {}
    for r in rows:
        cells.setdefault((r["tau_f"], r["tau_b"]), []).append(r[f"{metric}_mean"])
    mat = np.full((len(tfs), len(tbs)), np.nan)
    for (tf, tb), values in cells.items():
        if any(math.isfinite(v) for v in values):
            mat[tfs.index(tf), tbs.index(tb)] = pick(values)
    return tfs, tbs, mat


def best_cell(mat: np.ndarray, direction: str) -> tuple[int, int]:
    """(row, column) of the best finite cell of `mat` (NaN cells never win)."""
    flat = np.where(np.isnan(mat), -np.inf if direction == "max" else np.inf, mat)
    return np.unravel_index(np.argmax(flat) if direction == "max" else np.argmin(flat), mat.shape)


def plot_heatmap(
    runs: list[dict[str, Any]], metric: str, direction: str, path: str, title: str = ""
) -> str | None:
    tfs, tbs, mat = heatmap_grid(runs, metric, direction)
    if mat.size == 0 or np.all(np.isnan(mat)):
        return None
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(tbs), 0.8 + 0.5 * len(tfs)))
    cmap = "viridis" if direction == "max" else "viridis_r"
    im = ax.imshow(mat, origin="lower", cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(tbs)), [f"{t:g}" for t in tbs])
    ax.set_yticks(range(len(tfs)), [f"{t:g}" for t in tfs])
    ax.set_xlabel("tau_b (backward)")
    ax.set_ylabel("tau_f (forward)")
    lo, hi = np.nanmin(mat), np.nanmax(mat)
    for i in range(len(tfs)):
        for j in range(len(tbs)):
            if np.isfinite(mat[i, j]):
                # dark text on the bright end of the colour map, light text on the dark end
                bright = (mat[i, j] - lo) / (hi - lo + 1e-12)
                bright = bright if direction == "max" else 1 - bright
                color = "k" if bright > 0.6 else "w"
                ax.text(j, i, f"{mat[i, j]:.3g}", ha="center", va="center", fontsize=6, color=color)
    # The diagonal tau_f = tau_b (Softmax STE's line), drawn through cells with equal values.
    diag = [(tbs.index(t), tfs.index(t)) for t in tfs if t in tbs]
    if diag:
        xs, ys = zip(*diag, strict=True)
        ax.plot(xs, ys, "w--", lw=1, label="tau_f = tau_b")
    bi, bj = best_cell(mat, direction)
    # The best cell: outlined, with a star in its corner so its value stays readable.
    ax.add_patch(plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.plot(
        bj + 0.32,
        bi + 0.3,
        marker="*",
        color="red",
        markersize=9,
        markeredgecolor="k",
        ls="none",
        label=f"best ({tfs[bi]:g}, {tbs[bj]:g})",
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2, fontsize=7, frameon=False)
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(title or f"decoupled_st: {metric} (mean over seeds)", fontsize=9)
    return save(fig, path)


def plot_curves(
    runs: list[dict[str, Any]],
    best: dict[str, dict[str, Any]],
    metrics: tuple[str, ...],
    path: str,
) -> str | None:
    """Learning curves (mean over seeds, band = min..max) of the best config per estimator."""
    if not best:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for est, row in best.items():
        group = [
            r
            for r in runs
            if all(r[k] == row[k] for k in ("estimator", "tau_f", "tau_b", "lr"))
            and not r["diverged"]
        ]
        if not group:
            continue
        label = f"{est} ({row['tau_f']:g}, {row['tau_b']:g})"
        for ax, m in zip(axes[0], metrics, strict=True):
            steps = group[0]["curve"]["step"]
            ys = np.array(
                [[np.nan if v is None else v for v in r["curve"].get(m, [])] for r in group],
                dtype=float,
            )
            if ys.size == 0:
                continue
            (line,) = ax.plot(steps, np.nanmean(ys, 0), label=label)
            ax.fill_between(
                steps, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.2, color=line.get_color()
            )
    for ax, m in zip(axes[0], metrics, strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def sweep_figures(results: dict[str, Any], out_dir: str, task) -> list[str]:
    """All standard figures of a results dict: a heatmap per heatmap metric, and curves."""
    from dst_jax.sweep.results import best_per_estimator

    runs = results["runs"]
    written = []
    for m in task.heatmap_metrics:
        p = plot_heatmap(
            runs, m, task.metric_directions.get(m, "max"), os.path.join(out_dir, f"heatmap_{m}.png")
        )
        if p:
            written.append(p)
    best = best_per_estimator(
        runs, task.headline_metric, task.metric_directions.get(task.headline_metric, "max"), ()
    )
    curve_metrics = ("train_loss", task.headline_metric)
    p = plot_curves(runs, best, curve_metrics, os.path.join(out_dir, "curves.png"))
    if p:
        written.append(p)
    return written
