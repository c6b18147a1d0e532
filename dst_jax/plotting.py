"""Figures of a sweep, drawn from results and arrays, written as PNG.

Figures are `matplotlib.figure.Figure` objects rendered by the Agg canvas: no `pyplot`, no global
backend switch, so importing this module leaves a notebook's backend alone. Which config a
figure shows is decided by the caller with the one rule of `dst_jax.sweep.results` (the best
config by mean over seeds of the selection metric).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dst_jax.io import atomic_open

DPI = 120


def save(fig: Figure, path: str, dpi: int = DPI, tight: bool = True) -> str:
    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return path


def heatmap(
    tfs: list[float],
    tbs: list[float],
    mat: np.ndarray,
    best: tuple[int, int],
    direction: str,
    metric: str,
    title: str,
) -> Figure:
    """A (tau_f, tau_b) heatmap of `mat` with its values, the diagonal tau_f = tau_b dashed and
    the cell `best` (row, column) outlined and starred."""
    fig = Figure(figsize=(1.0 + 0.6 * len(tbs), 0.8 + 0.5 * len(tfs)))
    ax = fig.add_subplot()
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
    # The diagonal tau_f = tau_b, drawn through cells with equal values.
    diag = [(tbs.index(t), tfs.index(t)) for t in tfs if t in tbs]
    if diag:
        xs, ys = zip(*diag, strict=True)
        ax.plot(xs, ys, "w--", lw=1, label="tau_f = tau_b")
    bi, bj = best
    # The best cell: outlined, with a star in its corner so its value stays readable.
    ax.add_patch(Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="red", lw=2))
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
    ax.set_title(title, fontsize=9)
    return fig


def curves(groups: dict[str, list[dict[str, Any]]], metrics: tuple[str, ...]) -> Figure:
    """Learning curves: for each label, the mean over its runs (band = min..max) of each metric.

    `groups` maps a legend label to the runs (seeds) of one config.
    """
    fig = Figure(figsize=(4.2 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for label, group in groups.items():
        for ax, m in zip(axes, metrics, strict=True):
            ys = np.array(
                [[np.nan if v is None else v for v in r["curve"].get(m, [])] for r in group],
                dtype=float,
            )
            if ys.size == 0 or np.all(np.isnan(ys)):
                continue
            steps = np.array(group[0]["curve"]["step"])
            keep = ~np.all(np.isnan(ys), axis=0)  # e.g. a split evaluated only at the end
            (line,) = ax.plot(steps[keep], np.nanmean(ys[:, keep], 0), label=label, marker=".")
            ax.fill_between(
                steps[keep],
                np.nanmin(ys[:, keep], 0),
                np.nanmax(ys[:, keep], 0),
                alpha=0.2,
                color=line.get_color(),
            )
    for ax, m in zip(axes, metrics, strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def code_grid(grid_LxCxD: np.ndarray, title: str) -> Figure:
    """The (L, C) grid of decoded square images (white digits on black, a 2-pixel gap)."""
    grid_LxCxD = np.asarray(grid_LxCxD, np.float32)
    L, C, D = grid_LxCxD.shape
    side = math.isqrt(D)
    if side * side != D:
        raise ValueError(f"images of {D} pixels are not square; cannot draw the code grid")
    gap, cell = 2, side + 2
    mosaic = np.ones((L * cell - gap, C * cell - gap), np.float32)
    for l in range(L):
        for c in range(C):
            mosaic[l * cell : l * cell + side, c * cell : c * cell + side] = grid_LxCxD[
                l, c
            ].reshape(side, side)
    fig = Figure(figsize=(0.64 * C + 1.3, 0.64 * L + 0.7))
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, aspect="equal", interpolation="none")
    ax.set_xticks([c * cell + side / 2 for c in range(C)], [str(c) for c in range(C)])
    ax.set_yticks([l * cell + side / 2 for l in range(L)], [f"z{l + 1}" for l in range(L)])
    ax.tick_params(length=0)
    ax.set_xlabel("class of the varied latent (others at their most frequent code)")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    return fig


def histograms(bars: dict[str, np.ndarray], names: tuple[str, ...], title: str, ylabel: str):
    """Grouped bar chart: one bar series per label over the categories `names`, with the
    uniform level dashed (e.g. the gate usage of the best config per estimator)."""
    fig = Figure(figsize=(11, 6))
    ax = fig.add_subplot()
    width = 0.8 / max(len(bars), 1)
    xs = np.arange(len(names))
    for i, (label, hist) in enumerate(bars.items()):
        ax.bar(xs + (i - (len(bars) - 1) / 2) * width, hist, width, label=label)
    ax.axhline(1 / len(names), color="gray", ls="--", lw=0.8, label=f"uniform (1/{len(names)})")
    ax.set_xticks(xs, names, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    # Below the axes: inside, the legend would hide bars.
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.32))
    fig.tight_layout()
    return fig
