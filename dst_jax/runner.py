"""`run_sweep`: a whole sweep from configs to files (results.json, summary, PNGs, checkpoint).

This is where compute (`dst_jax.sweep`, `dst_jax.tasks`) meets presentation (`dst_jax.plotting`,
`dst_jax.summary`): the engine trains, this module writes what it returns.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from dst_jax import confirm, plotting, provenance, summary, tasks
from dst_jax import estimators as estimator_lib
from dst_jax import figures as figures_lib
from dst_jax.io import atomic_write_json, atomic_write_text
from dst_jax.provenance import machine_info  # noqa: F401  (re-exported: its earlier home)
from dst_jax.sweep import grid, halving, refine, results
from dst_jax.sweep.checkpoint import Checkpoint, CheckpointError
from dst_jax.sweep.config import SweepConfig
from dst_jax.sweep.engine import train_runs
from dst_jax.tasks import common
from dst_jax.tasks.base import Task, direction

# Sweep settings that change how a sweep runs, not what its runs compute: the checkpoint's
# fingerprint holds their defaults, so a rerun that changes them resumes the same checkpoint.
# `refine` is one of them because a refinement round depends only on the rounds before it: a
# finished sweep rerun with a larger `--refine` trains only the new rounds.
_RUN_ONLY_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(SweepConfig)
    if f.name in ("chunk_size", "checkpoint_every_s", "refine")
}


def selection(task: Task, config: dict[str, Any]) -> tuple[str, str]:
    """(select, report) of a results config: the metric that picks the best config (the
    headline metric on the selection split) and the one reported for it (on the test split)."""
    return f"{config['sweep']['select_on']}_{task.headline_metric}", f"test_{task.headline_metric}"


def run_sweep(
    task: Task,
    sweep: SweepConfig,
    out_dir: str,
    data_dir: str | None = None,
    *,
    progress: bool = True,
    callback: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], object] = print,
    command: str | None = None,
    runs: list[grid.Run] | None = None,
    confirmation: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train the sweep's grid and write its results into `out_dir`; returns the results dict.

    Files: `results.json` (DESIGN.md section 3; deterministic for a given sweep, so an interrupted
    and resumed sweep writes the same file), `timing.json` (machine, wall and compile times),
    `summary.md`, the figures, and `checkpoint/` (resume state; safe to delete once the sweep is
    done).

    `runs` trains exactly these runs instead of the sweep's grid (`sweep` then only sets the
    length, evaluation and selection rule); `confirmation` (see `dst_jax.confirm`) is recorded in
    results.json and makes the summary report its configs as chosen, without re-selecting.

    Raises:
      CheckpointError: if `out_dir` holds the results of a different sweep; `overwrite=True`
        deletes them (results, summary, timing and figures) first.
    """
    t0 = time.perf_counter()
    if runs is None:
        runs = grid.expand(sweep, task)
    elif sweep.refine:
        raise ValueError("an explicit list of runs has no grid to refine; leave refine at 0")
    else:
        runs = list(runs)
    data, info = task.load_data(data_dir)
    if sweep.select_on == "val" and "val_x" not in data:
        raise ValueError(
            "select_on='val' needs a validation split, but the task's val_fraction is 0; "
            "set a positive val_fraction (--set val_fraction=0.1) or select on test "
            "(--select-on test)"
        )
    n_train = int(data["train_x"].shape[0])
    steps = sweep.total_steps(n_train, task.config.batch_size)
    eval_every = min(sweep.eval_every, steps)
    sweep_fields = dataclasses.asdict(sweep)
    if not sweep.halving:  # a sweep without halving keeps the files (and checkpoint) it had
        del sweep_fields["halving"], sweep_fields["rungs"]
    config = {
        "task": dataclasses.asdict(task.config),
        "sweep": sweep_fields,
        "steps": steps,
        "steps_per_epoch": n_train // task.config.batch_size,
        "eval_every": eval_every,
        "eval_splits": [s for s in ("val", "test") if f"{s}_x" in data],
    }
    select, _ = selection(task, config)
    if sweep.halving:
        rungs = halving.rung_steps(steps, eval_every, sweep.halving, sweep.rungs)
        config["halving"] = {"eta": sweep.halving, "rungs": rungs}
    claim_out_dir(out_dir, task, info.get("dataset"), config, overwrite)
    ckpt = Checkpoint(out_dir)
    ckpt.open(
        {
            "task": task.name,
            "dataset": info.get("dataset"),
            "config": {**config, "sweep": {**config["sweep"], **_RUN_ONLY_DEFAULTS}},
            "runs": [dataclasses.asdict(r) for r in runs],
        }
    )
    log(
        f"{task.name}: {len(runs)} runs x {steps} steps on {info.get('dataset')} "
        f"({jax.device_count()} {jax.devices()[0].platform} device(s)); out: {out_dir}"
    )

    def train(round_runs, tag):
        if sweep.halving:
            rule = {"rungs": rungs, "eta": sweep.halving, "select": select}
            fn = functools.partial(halving.train_halving, **rule, direction=direction(task, select))
        else:
            fn = train_runs
        return fn(
            task,
            data,
            round_runs,
            steps=steps,
            eval_every=eval_every,
            chunk_size=sweep.chunk_size,
            checkpoint=ckpt,
            checkpoint_every_s=sweep.checkpoint_every_s,
            progress=progress,
            callback=callback,
            tag=tag,
            test_at=sweep.test_at,
            prng=sweep.prng,
        )

    out = train(runs, "grid")
    records = [{**r, "round": 0} for r in out.runs]
    figures, per_estimator = list(out.figures), {"grid": out.timing}
    for k in range(1, sweep.refine + 1):
        extra = refine.new_runs(records, runs, select, direction(task, select))
        if not extra:
            break
        log(f"refinement round {k}: {len(extra)} runs beyond the edges of the grid")
        out = train(extra, f"refine{k}")
        runs += extra
        records += [{**r, "round": k} for r in out.runs]
        figures += out.figures
        per_estimator[f"refine{k}"] = out.timing
    # The chunk sizes that actually ran (a resumed sweep keeps its first invocation's).
    config["chunk_sizes"] = {
        tag: {est: t["chunk_size"] for est, t in per.items()} for tag, per in per_estimator.items()
    }
    results_dict = {
        "task": task.name,
        "dataset": info.get("dataset"),
        "config": config,
        "data": info,
        "runs": records,
    }
    if confirmation is not None:
        results_dict["confirmation"] = confirmation
    ckpt.add_timing(wall_s=time.perf_counter() - t0)
    if jax.process_index() == 0:
        written = write_outputs(task, results_dict, figures, out_dir, log)
        invocations = ckpt.timing()["invocations_wall_s"]
        atomic_write_json(
            os.path.join(out_dir, "timing.json"),
            {
                # machine, versions, git_commit, git_dirty, created_utc.
                **provenance.record(),
                # Every invocation of this sweep (an interrupted one resumes), in total.
                "wall_s": round(sum(invocations), 2),
                "invocations_wall_s": invocations,
                "per_estimator": per_estimator,
                "command": command or " ".join(sys.argv),
            },
        )
        log("wrote: results.json, timing.json, " + ", ".join(written))
        log(time_line(per_estimator, sum(invocations)))
    return results_dict


def time_line(per_estimator: dict[str, dict[str, dict[str, Any]]], wall_s: float) -> str:
    """The final line of a sweep: its wall time, and how much of it compiling and training
    took (summed over rounds and estimators; the rest is loading, evaluation and files)."""
    compile_s = sum(t.get("compile_s", 0.0) for per in per_estimator.values() for t in per.values())
    train_s = sum(t.get("train_s", 0.0) for per in per_estimator.values() for t in per.values())
    return (
        f"time: {wall_s:.1f} s wall, of which compiling {compile_s:.1f} s and training "
        f"{train_s:.1f} s (per estimator in timing.json)"
    )


def _sweep_identity(task: str, dataset: Any, config: dict[str, Any]) -> dict[str, Any]:
    """What makes two results files the same sweep: task, data and config, without the settings
    that change only how it runs and the chunk sizes that ran (JSON-normalised)."""
    config = {k: v for k, v in config.items() if k != "chunk_sizes"}
    config["sweep"] = {**config.get("sweep", {}), **_RUN_ONLY_DEFAULTS}
    return json.loads(json.dumps({"task": task, "dataset": dataset, "config": config}))


def _output_files(out_dir: str, task_names: set[str]) -> list[str]:
    """The files `run_sweep` writes into `out_dir` (results, summary, timing, figures) that
    exist there; `task_names`: the tasks whose histogram figures to include."""
    histograms = set()
    for name in task_names:
        try:
            histograms |= set(tasks.make(name).histograms)
        except ValueError:  # a task that is not registered here
            pass
    names = ["results.json", "summary.md", "timing.json", "curves.png"]
    names += ["comparison.png", "profiles.png"]
    names += [f"{h}.png" for h in sorted(histograms)]
    found = [os.path.join(out_dir, n) for n in names]
    for pattern in ("heatmap_*.png", "codes_*.png"):
        found += glob.glob(os.path.join(glob.escape(out_dir), pattern))
    return [f for f in found if os.path.isfile(f)]


def claim_out_dir(
    out_dir: str, task: Task, dataset: Any, config: dict[str, Any], overwrite: bool = False
) -> None:
    """Refuse to write a sweep into a folder holding another sweep's results (a resumed or
    repeated sweep is the same sweep and goes on); with `overwrite`, delete that sweep's
    results and figures first, so the folder never mixes two sweeps.

    Raises:
      CheckpointError: naming the folder, for another sweep's (or an unreadable) results.json.
    """
    path = os.path.join(out_dir, "results.json")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            old = json.load(f)
        old_identity = _sweep_identity(old["task"], old.get("dataset"), old["config"])
        old_task = old["task"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        old_identity, old_task = None, None
    if old_identity == _sweep_identity(task.name, dataset, config):
        return
    what = "cannot be read" if old_identity is None else "holds the results of a different sweep"
    if not overwrite:
        raise CheckpointError(
            f"{path} {what} (other task, grid, steps or data); use a new --out folder, or pass "
            "--overwrite to delete that sweep's results and figures in it"
        )
    if jax.process_index() == 0:
        for file in _output_files(out_dir, {task.name, old_task} - {None}):
            os.remove(file)


def write_outputs(
    task: Task,
    results_dict: dict[str, Any],
    figure_arrays: list[dict[str, Any]],
    out_dir: str,
    log=print,
    write_results: bool = True,
) -> list[str]:
    """results.json, summary.md and the figures of a finished sweep; returns the names written.

    `figure_arrays` may be empty (figures redrawn from results.json, `write_results` False):
    then the figures that need the trained parameters (code grids) are not drawn."""
    if write_results:
        atomic_write_json(os.path.join(out_dir, "results.json"), results_dict)
    runs = results_dict["runs"]
    select, report = selection(task, results_dict["config"])
    sel_dir = direction(task, select)
    metrics = tuple(dict.fromkeys((select, report, *task.heatmap_metrics, "train_loss")))
    estimators = list(dict.fromkeys(r["estimator"] for r in runs))
    confirmation = results_dict.get("confirmation")
    if confirmation is not None:
        text = confirm.confirmation_summary(runs, confirmation, select, report, sel_dir, metrics)
        best = confirm.fixed_best(runs, confirmation["configs"], metrics)
    else:
        rungs = results_dict["config"].get("halving", {}).get("rungs")
        text = summary.sweep_summary(
            runs, select, report, sel_dir, metrics, estimators, task.histograms, rungs
        )
        best = results.best_per_estimator(runs, select, sel_dir, metrics)
    atomic_write_text(os.path.join(out_dir, "summary.md"), text + "\n")
    log("\n" + text)

    written = ["summary.md"]
    if confirmation is None:  # a confirmation's few cells make no temperature map
        written += heatmaps(task, runs, select, out_dir)
    title = f"{task.name} ({results_dict['dataset']})"
    for name, fig in (
        ("curves.png", figures_lib.curves(runs, best, select, report)),
        (
            "comparison.png",
            figures_lib.comparison(runs, best, select, report, direction(task, report), title),
        ),
        (
            "profiles.png",
            None
            if confirmation is not None
            else figures_lib.profiles(runs, select, report, sel_dir, title),
        ),
    ):
        if fig is not None:
            plotting.save(fig, os.path.join(out_dir, name))
            written.append(name)
    written += task_figures(task, results_dict, best, figure_arrays, out_dir)
    return written


def heatmaps(task: Task, runs: list[dict[str, Any]], select: str, out_dir: str) -> list[str]:
    """`heatmap_<estimator>_<metric>.png` for every two-temperature estimator of the sweep and
    every heatmap metric of the task; the starred cell is the best config by `select`."""
    written = []
    sel_dir = direction(task, select)
    present = dict.fromkeys(r["estimator"] for r in runs)
    for est in present:
        if est not in estimator_lib.REGISTRY or estimator_lib.REGISTRY[est].n_temperatures != 2:
            continue
        tfs, tbs, sel = results.heatmap_grid(runs, select, sel_dir, est)
        if sel.size == 0 or not (sel == sel).any():
            continue
        best = results.best_cell(sel, sel_dir)
        for metric in task.heatmap_metrics:
            _, _, mat = results.heatmap_grid(runs, metric, sel_dir, est, select=select)
            title = f"{est}: {metric} (mean over seeds); star: selected by {select}"
            fig = plotting.heatmap(tfs, tbs, mat, best, direction(task, metric), metric, title)
            name = f"heatmap_{est}_{metric}.png"
            plotting.save(fig, os.path.join(out_dir, name))
            written.append(name)
    return written


def task_figures(
    task: Task,
    results_dict: dict[str, Any],
    best: dict[str, dict[str, Any]],
    figure_arrays: list[dict[str, Any]],
    out_dir: str,
) -> list[str]:
    """Figures from the task's arrays, for the best config of each estimator (its lowest seed
    that did not diverge): `codes_<estimator>.png` from a code grid, `<name>.png` for each of the
    task's `histograms` (e.g. `gate_hist.png`)."""
    runs = results_dict["runs"]
    chosen = {
        est: (results.run_indices(runs, row, finished=True) or results.run_indices(runs, row))[0]
        for est, row in best.items()
    }
    written = []
    hists: dict[str, dict[str, np.ndarray]] = {name: {} for name in task.histograms}
    for est, index in chosen.items():
        # Without the training's arrays (figures redrawn from results.json), the histograms
        # come from the run's final metrics and the code grids keep their earlier files.
        arrays = figure_arrays[index] if figure_arrays else dict(runs[index]["final"])
        row = best[est]
        label = f"{figures_lib.label(row)}, seed {runs[index]['seed']}"
        if "code_grid" in arrays:
            name = f"codes_{est}.png"
            fig = plotting.code_grid(
                arrays["code_grid"], f"{task.name}: decoded codes, best {label}"
            )
            plotting.save(fig, os.path.join(out_dir, name))
            written.append(name)
        for name in task.histograms:
            if arrays.get(name) is not None:
                hist = np.asarray(arrays[name])
                ppl = float(common.perplexity(hist))
                hists[name][f"{label}, perplexity {ppl:.2f}"] = hist
    for name, bars in hists.items():
        if not bars:
            continue
        title = f"{task.name}: {name} of the best config per estimator ({results_dict['dataset']})"
        fig = plotting.histograms(bars, task.histograms[name], title, "fraction")
        plotting.save(fig, os.path.join(out_dir, f"{name}.png"))
        written.append(f"{name}.png")
    return written


def redraw(out_dir: str, log=print) -> list[str]:
    """Rewrite a finished sweep's summary.md and figures from its results.json, without
    training: every figure but the code grids (they need the trained parameters, which
    results.json does not hold; their files are left as they are). Returns the names written."""
    with open(os.path.join(out_dir, "results.json")) as f:
        res = json.load(f)
    task = tasks.make(res["task"])
    return write_outputs(task, res, [], out_dir, log=log, write_results=False)
