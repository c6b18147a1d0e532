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
from matplotlib.transforms import offset_copy

from dst_jax.io import atomic_open

DPI = 120


def save(fig: Figure, path: str, dpi: int = DPI, tight: bool = True) -> str:
    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return path


# Colours that stand out on every colour of viridis and on a white legend.
DIAGONAL_COLOR = "#e7298a"  # magenta
BEST_COLOR = "#d62728"  # red

# Inches per heatmap cell: the figure grows with the grid, so the cells (and their numbers) keep
# a readable size whatever the grid.
_CELL_W, _CELL_H = 0.62, 0.40


def _better_word(direction: str) -> str:
    return "higher is better" if direction == "max" else "lower is better"


def _cell_fontsize(cell_w_in: float, cell_h_in: float, n_chars: int) -> float:
    """A font size (points) that fits `n_chars` characters in a cell of the given size."""
    by_height = 0.36 * cell_h_in * 72
    # A digit is about 0.64 em wide; keep a tenth of the cell free.
    by_width = 0.9 * cell_w_in * 72 / (0.68 * max(n_chars, 1))
    return float(np.clip(min(by_height, by_width), 5.0, 11.0))


def heatmap(
    tfs: list[float],
    tbs: list[float],
    mat: np.ndarray,
    best: tuple[int, ...],
    direction: str,
    metric: str,
    title: str,
    log_colours: bool = False,
) -> Figure:
    """A (tau_f, tau_b) heatmap of `mat` with its values, the diagonal tau_f = tau_b dashed and
    the cell `best` (row, column) outlined, with a star centred in its upper half above its
    value. The colour bar names the metric and its direction; brighter is better either way.
    `log_colours`: a log colour scale when the positive values span more than a decade (the
    printed values stay as they are)."""
    from matplotlib.colors import LogNorm

    mat = np.asarray(mat, np.float64)
    n_f, n_b = len(tfs), len(tbs)
    # At least 3.2 x 2.0 inches of axes, so a 2 x 2 grid still has room for the title.
    ax_w, ax_h = max(_CELL_W * n_b, 3.2), max(_CELL_H * n_f, 2.0)
    cell_w, cell_h = ax_w / n_b, ax_h / n_f
    fig = Figure(figsize=(ax_w + 1.9, ax_h + 1.5), layout="constrained")
    ax = fig.add_subplot()
    cmap = "viridis" if direction == "max" else "viridis_r"
    norm = None
    positive = mat[np.isfinite(mat) & (mat > 0)]
    if log_colours and positive.size and positive.max() >= 10 * positive.min():
        norm = LogNorm(vmin=positive.min(), vmax=positive.max())
    im = ax.imshow(mat, origin="lower", cmap=cmap, aspect="auto", norm=norm)
    ax.set_xticks(range(n_b), [f"{t:g}" for t in tbs])
    ax.set_yticks(range(n_f), [f"{t:g}" for t in tfs])
    ax.set_xlabel("tau_b (backward temperature)")
    ax.set_ylabel("tau_f (forward temperature)")
    texts = {(i, j): f"{mat[i, j]:.3g}" for i in range(n_f) for j in range(n_b)}
    size = _cell_fontsize(cell_w, cell_h, max((len(t) for t in texts.values()), default=1))
    bi, bj = (int(v) for v in best)
    # In the best cell the star sits above the cell's centre and the value below it, offset in
    # points (not data units) so that they stay together in a tall cell.
    cell_h_pt = cell_h * 72
    star_up = offset_copy(ax.transData, fig=fig, y=min(0.22 * cell_h_pt, 8.0), units="points")
    text_down = offset_copy(ax.transData, fig=fig, y=-min(0.17 * cell_h_pt, 6.0), units="points")
    for (i, j), text in texts.items():
        if not np.isfinite(mat[i, j]):
            continue
        # dark text on the bright end of the colour map, light text on the dark end
        rgba = im.cmap(im.norm(mat[i, j]))
        luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
        color = "k" if luminance > 0.5 else "w"
        at_best = (i, j) == (bi, bj)
        ax.text(
            j, i, text, ha="center", va="center", fontsize=size, color=color,
            weight="bold" if at_best else "normal",
            transform=text_down if at_best else ax.transData,
        )  # fmt: skip
    # The diagonal tau_f = tau_b, through the cells where both temperatures are equal.
    diag = [(tbs.index(t), tfs.index(t)) for t in tfs if t in tbs]
    if diag:
        xs, ys = zip(*diag, strict=True)
        ax.plot(xs, ys, ls="--", color=DIAGONAL_COLOR, lw=1.6, label="tau_f = tau_b")
    ax.add_patch(Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec=BEST_COLOR, lw=2.2))
    ax.plot(
        bj,
        bi,
        transform=star_up,
        marker="*",
        color=BEST_COLOR,
        markersize=min(12.0, 0.42 * cell_h * 72),
        markeredgecolor="w",
        markeredgewidth=0.6,
        ls="none",
        label=f"selected: tau_f={tfs[bi]:g}, tau_b={tbs[bj]:g}",
    )
    ax.set_xlim(-0.5, n_b - 0.5)
    ax.set_ylim(-0.5, n_f - 0.5)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    bar = fig.colorbar(im, ax=ax)
    bar.set_label(f"{metric} ({_better_word(direction)})")
    ax.set_title(title, fontsize=9)
    return fig


def config_label(estimator: str, taus: dict[str, float]) -> str:
    """`decoupled_st (tau_f=0.1, tau_b=0.3)`: an estimator and its named temperatures."""
    if not taus:
        return estimator
    return f"{estimator} (" + ", ".join(f"{k}={v:g}" for k, v in taus.items()) + ")"


_LINESTYLES = ("-", "--", ":", "-.")


def curves(
    groups: dict[str, list[dict[str, Any]]],
    metrics: tuple[str, ...],
    titles: dict[str, str] | None = None,
) -> Figure:
    """Learning curves: for each label, the mean over its runs (band = min..max) of each metric.

    `groups` maps a legend label to the runs (seeds) of one config; `titles` gives a panel's
    title by metric. A group whose curves equal an earlier group's everywhere (e.g. an
    estimator that reduces to another at these temperatures) is drawn dashed and says so in
    the legend, instead of hiding under it. A metric evaluated only at the last step is drawn
    as points with min..max bars, one per label, instead of a column of dots.
    """
    titles = titles or {}
    data: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for label, group in groups.items():
        data[label] = {}
        for m in metrics:
            ys = np.array(
                [[np.nan if v is None else v for v in r["curve"].get(m, [])] for r in group],
                dtype=float,
            )
            if ys.size == 0 or np.all(np.isnan(ys)):
                continue
            steps = np.array(group[0]["curve"]["step"])
            keep = ~np.all(np.isnan(ys), axis=0)  # e.g. a split evaluated only at the end
            data[label][m] = (steps[keep], ys[:, keep])
    # Which label each label duplicates (same steps and values in every metric), if any.
    same_as: dict[str, str] = {}
    labels = list(data)
    for k, label in enumerate(labels):
        for other in labels[:k]:
            if other in same_as or set(data[label]) != set(data[other]) or not data[label]:
                continue
            if all(
                np.array_equal(data[label][m][0], data[other][m][0])
                and data[label][m][1].shape == data[other][m][1].shape
                and np.allclose(data[label][m][1], data[other][m][1], equal_nan=True)
                for m in data[label]
            ):
                same_as[label] = other
                break
    end_only = {
        m: all(len(d[m][0]) <= 1 for d in data.values() if m in d)
        and any(m in d for d in data.values())
        for m in metrics
    }
    fig = Figure(figsize=(4.4 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    handles: dict[str, Any] = {}
    colors: dict[str, str] = {}
    n_copies: dict[str, int] = {}  # how many duplicates of a label are drawn so far
    for n, label in enumerate(labels):
        dup = same_as.get(label)
        colors[label] = color = colors[dup] if dup else f"C{n % 10}"
        style = "-"
        if dup:
            n_copies[dup] = n_copies.get(dup, 0) + 1
            style = _LINESTYLES[n_copies[dup] % len(_LINESTYLES)]
        shown = f"{label} (identical to {dup.split(' (')[0]})" if dup else label
        for ax, m in zip(axes, metrics, strict=True):
            if m not in data[label]:
                continue
            steps, ys = data[label][m]
            mean = np.nanmean(ys, 0)
            if end_only[m]:
                x = labels.index(label) + (0.15 if dup else 0.0)
                err = np.array([[mean[0] - np.nanmin(ys)], [np.nanmax(ys) - mean[0]]])
                h = ax.errorbar(
                    [x],
                    mean,
                    yerr=err,
                    fmt="o" if not dup else "s",
                    color=color,
                    capsize=4,
                    mfc=color if not dup else "none",
                    label=shown,
                )
            else:
                (h,) = ax.plot(
                    steps,
                    mean,
                    label=shown,
                    marker=".",
                    color=color,
                    ls=style,
                    lw=1.4 if not dup else 2.0,
                )
                ax.fill_between(steps, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.15, color=color)
            handles.setdefault(shown, h)
    for ax, m in zip(axes, metrics, strict=True):
        if end_only[m]:
            ax.set_xticks(
                range(len(labels)),
                [lb.split(" (")[0] for lb in labels],
                rotation=35,
                ha="right",
                fontsize=7,
            )
            ax.set_xlim(-0.6, len(labels) - 0.4)
            ax.set_title(
                titles.get(m, m) + "\n(after the last step; bars: min..max over seeds)", fontsize=9
            )
        else:
            ax.set_xlabel("step")
            ax.set_title(titles.get(m, m) + "\n(mean over seeds; band: min..max)", fontsize=9)
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncol=min(3, max(len(handles), 1)),
        fontsize=8,
        frameon=False,
    )
    return fig


def comparison(
    rows: list[dict[str, Any]],
    metric: str,
    direction: str,
    title: str,
) -> Figure:
    """Dot-and-whisker chart of each estimator's selected config: the mean of `metric` over
    seeds with its 95% Student-t interval, each seed's value as a small grey dot.

    `rows`: dicts with `label`, `values` (the seeds' values), `mean` and `ci` (the interval's
    half-width; NaN with one seed, drawn without a whisker and said in the label).
    """
    n = len(rows)
    fig = Figure(figsize=(7.2, 1.3 + 0.42 * max(n, 2)), layout="constrained")
    ax = fig.add_subplot()
    for k, row in enumerate(rows):
        y = n - 1 - k  # the first row on top
        vals = np.asarray([v for v in row["values"] if v is not None], float)
        ax.plot(vals, np.full(len(vals), y), "o", color="0.6", ms=3.5, zorder=2)
        ci = row["ci"]
        if np.isfinite(ci):
            ax.errorbar(
                row["mean"], y, xerr=ci, fmt="o", color="C0", ms=7, capsize=4, lw=1.8, zorder=3
            )
        else:
            ax.plot(row["mean"], y, "o", color="C0", ms=7, zorder=3)
    # Said per row only where some rows have intervals (the caller's title says it otherwise).
    mixed = any(np.isfinite(row["ci"]) for row in rows)
    labels = [
        row["label"] + ("\n(one seed: no interval)" if mixed and not np.isfinite(row["ci"]) else "")
        for row in rows
    ]
    ax.set_yticks(range(n), labels[::-1], fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel(f"{metric} ({_better_word(direction)})")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(title, fontsize=9)
    return fig


def profiles(panels: list[dict[str, Any]], title: str) -> Figure:
    """Profiles of a temperature grid through its best cell: for each panel, each metric's mean
    over seeds (band: 95% interval, where there are several seeds) along one temperature with
    the other held at its best value, the best value starred, on a log temperature axis.

    `panels`: dicts with `title`, `xlabel`, `x` (temperatures), `best_x`, `lines` (a list of
    dicts with `label`, `mean` and `ci` arrays over `x`) and `ylabel`.
    """
    from matplotlib.ticker import NullLocator

    cols = min(2, max(len(panels), 1))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = Figure(figsize=(4.6 * cols, 3.0 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes, panels, strict=False):
        x = np.asarray(panel["x"], float)
        for k, line in enumerate(panel["lines"]):
            mean, ci = np.asarray(line["mean"], float), np.asarray(line["ci"], float)
            (h,) = ax.plot(x, mean, marker="o", ms=3.5, color=f"C{k}", ls=("-", "--", ":")[k % 3])
            if np.isfinite(ci).any():
                ax.fill_between(x, mean - ci, mean + ci, color=f"C{k}", alpha=0.15)
            handles.setdefault(line["label"], h)
            at = np.flatnonzero(x == panel["best_x"])
            if at.size and k == 0:
                ax.plot(x[at], mean[at], "*", color=BEST_COLOR, ms=13, mec="w", zorder=4)
        if (x > 0).all() and len(x) > 1:
            ax.set_xscale("log")
            ax.set_xticks(x, [f"{t:g}" for t in x])
            ax.xaxis.set_minor_locator(NullLocator())
        ax.margins(x=0.06)  # room for the star at an end of the axis
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
        ax.set_title(panel["title"], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if panels:
        (star,) = axes[0].plot([], [], "*", color=BEST_COLOR, ms=13, mec="w")
        handles["selected cell"] = star
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncol=min(3, len(handles) or 1),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title, fontsize=10)
    return fig


def temperature_curves(
    single: dict[str, dict[str, Any]],
    metrics: tuple[str, ...],
    ylabels: dict[str, str],
    title: str,
) -> Figure:
    """Each metric against a single temperature, one line per label, on log axes (the cosine
    on a linear one); a label without a temperature (`tau` None) is a horizontal line.

    `single` maps a label to {"tau": temperatures or None, metric: values}.
    """
    from matplotlib.ticker import NullLocator

    fig = Figure(figsize=(4.3 * len(metrics), 3.8), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    taus: list[float] = [1.0]
    handles: dict[str, Any] = {}
    for ax, m in zip(axes, metrics, strict=True):
        for k, (label, est) in enumerate(single.items()):
            ys = np.atleast_1d(np.asarray(est[m], float))
            if est["tau"] is None:
                h = ax.axhline(float(ys[0]), ls="--", lw=1.2, color=f"C{k}")
            else:
                (h,) = ax.plot(est["tau"], ys, marker=".", color=f"C{k}")
                taus = est["tau"]
            handles.setdefault(label, h)
        ax.set_xscale("log")
        ax.set_xticks(taus, [f"{t:g}" for t in taus])
        ax.xaxis.set_minor_locator(NullLocator())
        if m != "cosine":
            ax.set_yscale("log")
        ax.set_xlabel("tau")
        ax.set_ylabel(ylabels.get(m, m))
        ax.set_title(ylabels.get(m, m), fontsize=9)
        ax.grid(alpha=0.3, which="both")
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncol=min(3, len(handles) or 1),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title, fontsize=10)
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
    fig = Figure(figsize=(11, 6), layout="constrained")
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
    fig.legend(loc="outside lower center", fontsize=8, ncol=2, frameon=False)
    return fig
