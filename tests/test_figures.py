"""The figures read at a glance: checked on rendered images, not on the code that draws them.

- no horizontal band of background wider than 8% of an image's height (at several grid sizes);
- the selected cell's star lies inside that cell, centred horizontally;
- every legend entry is drawn in a colour that differs from the legend's background;
- curves carry titles and labelled temperatures, identical runs are told apart, and a metric
  measured only after the last step is drawn as points with bars;
- a results folder's figures are redrawn from results.json alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import Rectangle
from PIL import Image

from dst_jax import figures, plotting
from dst_jax.sweep import grid, results

REPO = Path(__file__).resolve().parents[1]
MAX_BAND = 0.08


def blank_band(png: Path) -> float:
    """The longest run of rows that are all background (white), as a fraction of the height."""
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    blank = np.all(rgb >= 250, axis=(1, 2))
    longest = run = 0
    for b in blank:
        run = run + 1 if b else 0
        longest = max(longest, run)
    return longest / len(blank)


def _grid(n_f: int, n_b: int) -> tuple[list[float], list[float], np.ndarray]:
    tfs = [round(0.05 * 1.6**k, 3) for k in range(n_f)]
    tbs = [round(0.05 * 1.6**k, 3) for k in range(n_b)]
    f, b = np.meshgrid(np.log(tfs), np.log(tbs), indexing="ij")
    return tfs, tbs, 0.9 - 0.02 * (f + 1.5) ** 2 - 0.01 * (b + 0.5) ** 2


def _rendered(fig):
    """The figure drawn at its own dpi (layout done), and its pixels (row 0 at the top)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


@pytest.mark.parametrize("shape", [(2, 2), (6, 6), (11, 10)])
def test_heatmap_has_no_blank_band(tmp_path, shape):
    tfs, tbs, mat = _grid(*shape)
    best = results.best_cell(mat, "max")
    fig = plotting.heatmap(tfs, tbs, mat, best, "max", "val_acc", "decoupled_st: val_acc")
    path = plotting.save(fig, str(tmp_path / "h.png"))
    assert blank_band(Path(path)) <= MAX_BAND, shape


@pytest.mark.parametrize("shape", [(1, 2), (2, 2), (6, 6), (11, 10)])
def test_heatmap_star_is_inside_the_selected_cell(shape):
    tfs, tbs, mat = _grid(*shape)
    best = (shape[0] - 1, 0)  # a corner: where a star off the centre would leave the grid
    fig = plotting.heatmap(tfs, tbs, mat, best, "max", "val_acc", "t")
    pixels = _rendered(fig)
    ax = fig.axes[0]
    (star,) = [line for line in ax.lines if line.get_marker() == "*"]
    (cell,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    # Where the star is drawn: its data point through its own transform (which may offset it).
    x, y = star.get_transform().transform(star.get_xydata()[0])
    box = cell.get_window_extent()
    assert box.x0 < x < box.x1 and box.y0 < y < box.y1
    assert abs(x - (box.x0 + box.x1) / 2) < 1.0  # centred across the cell
    # And the pixel under the star's centre is the star's colour.
    r, g, b, _ = pixels[int(round(pixels.shape[0] - y)), int(round(x))]
    want = np.array(to_rgba(plotting.BEST_COLOR)[:3]) * 255
    assert np.abs(np.array([r, g, b]) - want).max() < 40


def test_heatmap_numbers_grow_with_the_cells():
    sizes = {}
    for shape in [(2, 2), (11, 10)]:
        tfs, tbs, mat = _grid(*shape)
        fig = plotting.heatmap(tfs, tbs, mat, (0, 0), "max", "m", "t")
        sizes[shape] = min(t.get_fontsize() for t in fig.axes[0].texts)
    assert sizes[(11, 10)] >= 8  # readable at 100% on the largest grid
    assert sizes[(2, 2)] >= sizes[(11, 10)]


def test_heatmap_legend_entries_are_visible_and_the_colour_bar_names_the_direction():
    tfs, tbs, mat = _grid(6, 6)
    fig = plotting.heatmap(tfs, tbs, mat, (2, 3), "min", "test_loss", "t")
    pixels = _rendered(fig)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["tau_f = tau_b", f"selected: tau_f={tfs[2]:g}, tau_b={tbs[3]:g}"]
    frame = legend.get_frame()
    background = frame.get_facecolor() if legend.get_frame_on() else fig.get_facecolor()
    box = legend.get_window_extent()
    height = pixels.shape[0]
    patch = pixels[int(height - box.y1) : int(height - box.y0), int(box.x0) : int(box.x1), :3]
    for handle in legend.legend_handles:
        color = to_rgba(handle.get_color())
        assert np.abs(np.array(color[:3]) - np.array(to_rgba(background)[:3])).max() > 0.3
        # The handle is drawn: pixels of its colour lie inside the legend.
        want = np.array(color[:3]) * 255
        assert (np.abs(patch.astype(int) - want).max(axis=2) < 40).sum() >= 4
    assert fig.axes[1].get_ylabel() == "test_loss (lower is better)"


def _run(est, f, b, seed, steps, **curve):
    return {
        **dataclasses.asdict(grid.Run(est, f, b, seed, 1e-3)),
        "diverged": False,
        "diverged_step": None,
        "final": {k: v[-1] for k, v in curve.items()},
        "curve": {"step": steps, **curve},
    }


def test_curves_titles_labels_duplicates_and_an_end_only_metric(tmp_path):
    steps = [10, 20, 30]
    groups = {}
    for name, loss in (("decoupled_st", 1.0), ("softmax_ste", 1.0), ("identity_ste", 1.5)):
        groups[plotting.config_label(name, {"tau_f": 0.1, "tau_b": 0.3})] = [
            _run(
                name,
                0.1,
                0.3,
                s,
                steps,
                train_loss=[loss, loss / 2, loss / 3 + s / 100],
                test_acc=[None, None, 0.8 - loss / 10 + s / 100],
            )  # fmt: skip
            for s in range(3)
        ]
    fig = plotting.curves(groups, ("train_loss", "test_acc"), {"train_loss": "training loss"})
    path = plotting.save(fig, str(tmp_path / "c.png"))
    assert blank_band(Path(path)) <= MAX_BAND
    loss_ax, test_ax = fig.axes
    assert loss_ax.get_title().startswith("training loss") and test_ax.get_title()
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0] == "decoupled_st (tau_f=0.1, tau_b=0.3)"
    # softmax_ste's runs equal decoupled_st's: drawn in another line style, and said so.
    assert "identical to decoupled_st" in labels[1]
    first, copy = loss_ax.lines[0], loss_ax.lines[1]
    assert first.get_linestyle() != copy.get_linestyle()
    # The test split, measured once: points with bars at one x per config, named ticks.
    bars = [c for c in test_ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3
    ticks = [t.get_text() for t in test_ax.get_xticklabels()]
    assert ticks == ["decoupled_st", "softmax_ste", "identity_ste"]


def synthetic_sweep(tmp_path: Path, seeds: int = 3) -> Path:
    """A results folder of the sbn task: decoupled_st on a 4 x 3 grid (best cell off the
    diagonal) and softmax_ste on the diagonal, with smooth made-up metrics."""
    rng = np.random.default_rng(0)
    tfs, tbs = [0.1, 0.3, 1.0, 3.0], [0.3, 1.0, 3.0]
    steps = [50, 100]
    runs = []

    def acc(f, b, s):
        return 0.85 - 0.02 * (math.log(f) + 2) ** 2 - 0.01 * math.log(b) ** 2 + 0.002 * s

    for s in range(seeds):
        for f in tfs:
            for b in tbs:
                v = acc(f, b, s)
                runs.append(
                    _run(
                        "decoupled_st",
                        f,
                        b,
                        s,
                        steps,
                        train_loss=[1.0, 1 - v / 2],
                        val_acc_stoch=[v - 0.1, v],
                        test_acc_stoch=[None, v - 0.01],
                        test_acc_det=[None, v - 0.02],
                    )  # fmt: skip
                )
        for t in tbs:
            v = acc(t, t, s) - 0.01 + 0.003 * rng.random()
            runs.append(
                _run(
                    "softmax_ste",
                    t,
                    t,
                    s,
                    steps,
                    train_loss=[1.0, 1 - v / 2],
                    val_acc_stoch=[v - 0.1, v],
                    test_acc_stoch=[None, v - 0.01],
                    test_acc_det=[None, v - 0.02],
                )  # fmt: skip
            )
    res = {
        "task": "sbn",
        "dataset": "synthetic",
        "config": {
            "sweep": {"select_on": "val", "seeds": seeds},
            "steps": 100,
            "steps_per_epoch": 50,
            "eval_every": 50,
        },
        "data": {},
        "runs": runs,
    }
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(res))
    return out


def test_comparison_and_profiles_show_the_selected_configs(tmp_path):
    res = json.loads((synthetic_sweep(tmp_path) / "results.json").read_text())
    runs = res["runs"]
    metrics = ("val_acc_stoch", "test_acc_stoch")
    best = results.best_per_estimator(runs, "val_acc_stoch", "max", metrics)
    fig = figures.comparison(runs, best, "val_acc_stoch", "test_acc_stoch", "max", "sbn")
    path = plotting.save(fig, str(tmp_path / "comparison.png"))
    assert blank_band(Path(path)) <= MAX_BAND
    ax = fig.axes[0]
    # One whisker per estimator, spanning its 95% interval over seeds.
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    row = best["decoupled_st"]
    (segments,) = bars[0].lines[2]
    (x0, _), (x1, _) = segments.get_segments()[0]
    mean, ci = row["test_acc_stoch_mean"], row["test_acc_stoch_ci"]
    assert (x0, x1) == pytest.approx((mean - ci, mean + ci))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert f"decoupled_st (tau_f={row['tau_f']:g}, tau_b={row['tau_b']:g})" in labels

    fig = figures.profiles(runs, "val_acc_stoch", "test_acc_stoch", "max", "sbn")
    path = plotting.save(fig, str(tmp_path / "profiles.png"))
    assert blank_band(Path(path)) <= MAX_BAND
    along_f, along_b = fig.axes[:2]
    assert "along tau_f" in along_f.get_title() and "along tau_b" in along_b.get_title()
    (star,) = [line for line in along_f.lines if line.get_marker() == "*" and len(line.get_xdata())]
    assert star.get_xdata()[0] == row["tau_f"]
    assert star.get_ydata()[0] == pytest.approx(row["val_acc_stoch_mean"])


def test_report_redraws_a_folder_from_its_results(tmp_path, capsys):
    from experiments import report

    out = synthetic_sweep(tmp_path)
    report.main([str(out), "--figures"])
    names = {p.name for p in out.iterdir()}
    for name in (
        "summary.md",
        "comparison.png",
        "profiles.png",
        "curves.png",
        "heatmap_decoupled_st_test_acc_stoch.png",
    ):
        assert name in names, name
    for png in out.glob("*.png"):
        assert blank_band(png) <= MAX_BAND, png.name
    assert "Paired comparisons" in (out / "summary.md").read_text()
    assert "rewrote in" in capsys.readouterr().out


def test_committed_figures_have_no_blank_band():
    pngs = sorted(REPO.glob("results/*/*.png"))
    assert pngs
    wide = {str(p.relative_to(REPO)): round(blank_band(p), 3) for p in pngs}
    assert {k: v for k, v in wide.items() if v > MAX_BAND} == {}


def test_only_the_plotting_module_imports_matplotlib():
    importers = []
    for path in REPO.glob("**/*.py"):
        if ".venv" in path.parts or path.parts[-2:] == ("tests", path.name):
            continue
        text = path.read_text()
        if "import matplotlib" in text or "from matplotlib" in text:
            importers.append(str(path.relative_to(REPO)))
    assert importers == ["dst_jax/plotting.py"]


def test_task_figures_of_runs_without_arrays_draw_from_their_final_metrics(tmp_path):
    # A confirmation's reused runs have no training arrays (None in the list): the histograms
    # of the best configs come from their recorded final metrics.
    from dst_jax import confirm
    from dst_jax.sweep.report import build_report

    res = json.loads((REPO / "results" / "dlgn-confirm" / "results.json").read_text())
    task = confirm.task_from_results(res)
    best = build_report(task, res).best
    arrays: list = [None] * len(res["runs"])
    written = figures.task_figures(task, res, best, arrays, str(tmp_path))
    assert written == ["gate_hist.png"] and (tmp_path / "gate_hist.png").stat().st_size > 0
