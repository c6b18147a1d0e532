"""`run_sweep`: a whole sweep from configs to files (results.json, summary, PNGs, checkpoint).

This is where compute (`dst_jax.sweep`, `dst_jax.tasks`) meets presentation (`dst_jax.plotting`,
`dst_jax.summary`): the engine trains, this module writes what it returns.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax

from dst_jax import confirm, provenance, summary, tasks
from dst_jax import figures as figures_lib
from dst_jax.io import atomic_write_json, atomic_write_text
from dst_jax.provenance import machine_info  # noqa: F401  (re-exported: its earlier home)
from dst_jax.sweep import grid, halving, refine, results
from dst_jax.sweep import report as report_lib
from dst_jax.sweep.checkpoint import Checkpoint, CheckpointError
from dst_jax.sweep.config import OPTIMIZER_FIELDS, TASK_OPTIMIZER, EngineOptions, SweepConfig
from dst_jax.sweep.engine import train_runs
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
_OPTIMIZER_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(SweepConfig) if f.name in OPTIMIZER_FIELDS
}


def selection(task: Task, config: dict[str, Any]) -> tuple[str, str]:
    """(select, report) of a results config: the metric that picks the best config (the
    headline metric on the selection split) and the one reported for it (on the test split)."""
    return report_lib.selection(task, config)


@dataclasses.dataclass
class Prepared:
    """A sweep ready to train (`prepare`): its runs, data, results config and checkpoint."""

    runs: list[grid.Run]
    data: dict[str, Any]
    info: dict[str, Any]
    config: dict[str, Any]
    checkpoint: Checkpoint
    t0: float


@dataclasses.dataclass
class Trained:
    """What `train` returns: every run's record (with its refinement `round`), figure arrays
    and each round's timing per estimator."""

    records: list[dict[str, Any]]
    figures: list[dict[str, Any] | None]
    per_estimator: dict[str, dict[str, Any]]


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

    `task` is any object with the Task protocol (`dst_jax.tasks.base.Task`): a built-in task or
    a user's own. The three steps are `prepare` (grid, data, config, checkpoint), `train` (the
    engine, with halving and refinement rounds) and `write`.

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
    prepared = prepare(task, sweep, out_dir, data_dir, runs=runs, overwrite=overwrite, log=log)
    trained = train(task, sweep, prepared, progress=progress, callback=callback, log=log)
    return write(
        task, prepared, trained, out_dir, command=command, confirmation=confirmation, log=log
    )


def prepare(
    task: Task,
    sweep: SweepConfig,
    out_dir: str,
    data_dir: str | None = None,
    *,
    runs: list[grid.Run] | None = None,
    overwrite: bool = False,
    log: Callable[[str], object] = print,
) -> Prepared:
    """The runs (the sweep's grid, or `runs`), the data, the results config, and the opened
    checkpoint of `out_dir` (after `claim_out_dir`)."""
    t0 = time.perf_counter()
    if runs is None:
        runs = grid.expand(sweep, task)
    elif sweep.refine:
        raise ValueError("an explicit list of runs has no grid to refine; leave refine at 0")
    else:
        runs = list(runs)
    if sweep.optimizer == TASK_OPTIMIZER and not callable(getattr(task, "make_optimizer", None)):
        raise ValueError(
            f"optimizer 'task' needs the task {task.name!r} to have make_optimizer(learning_rate); "
            "give an optax optimizer's name instead (--optimizer adam)"
        )
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
    if sweep.halving:
        rungs = halving.rung_steps(steps, eval_every, sweep.halving, sweep.rungs)
        config["halving"] = {"eta": sweep.halving, "rungs": rungs}
    claim_out_dir(out_dir, task, info.get("dataset"), config, overwrite)
    ckpt = Checkpoint(out_dir)
    ckpt.open(
        {
            "task": task.name,
            "dataset": info.get("dataset"),
            "config": {**config, "sweep": _fingerprint_sweep(config["sweep"])},
            "runs": [dataclasses.asdict(r) for r in runs],
        }
    )
    log(
        f"{task.name}: {len(runs)} runs x {steps} steps on {info.get('dataset')} "
        f"({jax.device_count()} {jax.devices()[0].platform} device(s)); out: {out_dir}"
    )
    return Prepared(runs, data, info, config, ckpt, t0)


def train(
    task: Task,
    sweep: SweepConfig,
    prepared: Prepared,
    *,
    progress: bool = True,
    callback: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], object] = print,
) -> Trained:
    """Train the prepared runs (with halving if the sweep asks), then each refinement round's
    runs beyond the edges of the grid."""
    config = prepared.config
    select, _ = selection(task, config)
    options = EngineOptions.of_sweep(
        sweep,
        steps=config["steps"],
        eval_every=config["eval_every"],
        checkpoint=prepared.checkpoint,
        progress=progress,
        callback=callback,
    )

    def train_round(round_runs, tag):
        opts = dataclasses.replace(options, tag=tag)
        if sweep.halving:
            rule = {"rungs": config["halving"]["rungs"], "eta": sweep.halving, "select": select}
            return halving.train_halving(
                task, prepared.data, round_runs, opts, **rule, direction=direction(task, select)
            )
        return train_runs(task, prepared.data, round_runs, opts)

    runs = prepared.runs
    out = train_round(runs, "grid")
    records = [{**r, "round": 0} for r in out.runs]
    figures, per_estimator = list(out.figures), {"grid": out.timing}
    for k in range(1, sweep.refine + 1):
        extra = refine.new_runs(records, runs, select, direction(task, select))
        if not extra:
            break
        log(f"refinement round {k}: {len(extra)} runs beyond the edges of the grid")
        out = train_round(extra, f"refine{k}")
        runs += extra
        records += [{**r, "round": k} for r in out.runs]
        figures += out.figures
        per_estimator[f"refine{k}"] = out.timing
    return Trained(records, figures, per_estimator)


def write(
    task: Task,
    prepared: Prepared,
    trained: Trained,
    out_dir: str,
    *,
    command: str | None = None,
    confirmation: dict[str, Any] | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """results.json, timing.json, summary.md and the figures of a trained sweep (process 0
    only); returns the results dict."""
    config, per_estimator, ckpt = prepared.config, trained.per_estimator, prepared.checkpoint
    # The chunk sizes that actually ran (a resumed sweep keeps its first invocation's).
    config["chunk_sizes"] = {
        tag: {est: t["chunk_size"] for est, t in per.items()} for tag, per in per_estimator.items()
    }
    results_dict = {
        "task": task.name,
        "dataset": prepared.info.get("dataset"),
        "config": config,
        "data": prepared.info,
        # How the runs' train_* metrics were measured (results without it: the interval's mean).
        "train_metrics": results.TRAIN_METRICS,
        "runs": trained.records,
    }
    if confirmation is not None:
        results_dict["confirmation"] = confirmation
    ckpt.add_timing(wall_s=time.perf_counter() - prepared.t0)
    if jax.process_index() == 0:
        written = write_outputs(task, results_dict, trained.figures, out_dir, log)
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


def _fingerprint_sweep(sweep_fields: dict[str, Any]) -> dict[str, Any]:
    """The sweep fields that make a sweep what it is: the run-only settings at their defaults,
    and the optimizer's fields only where they differ from the default (Adam), so a results
    file or checkpoint written before the optimizer was a setting is the same sweep."""
    out = {**sweep_fields, **_RUN_ONLY_DEFAULTS}
    for name, default in _OPTIMIZER_DEFAULTS.items():
        if out.get(name, default) == default:
            out.pop(name, None)
    return out


def _sweep_identity(task: str, dataset: Any, config: dict[str, Any]) -> dict[str, Any]:
    """What makes two results files the same sweep: task, data and config, without the settings
    that change only how it runs and the chunk sizes that ran (JSON-normalised)."""
    config = {k: v for k, v in config.items() if k != "chunk_sizes"}
    config["sweep"] = _fingerprint_sweep(config.get("sweep", {}))
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
    figure_arrays: list[dict[str, Any] | None],
    out_dir: str,
    log=print,
    write_results: bool = True,
) -> list[str]:
    """results.json, summary.md and the figures of a finished sweep; returns the names written.
    Every one reads the sweep's report (`dst_jax.sweep.report.build_report`), built once here.

    `figure_arrays` may be empty (figures redrawn from results.json, `write_results` False):
    then the figures that need the trained parameters (code grids) are not drawn."""
    if write_results:
        atomic_write_json(os.path.join(out_dir, "results.json"), results_dict)
    rep = report_lib.build_report(task, results_dict)
    text = summary_text(task, rep)
    atomic_write_text(os.path.join(out_dir, "summary.md"), text + "\n")
    log("\n" + text)
    written = ["summary.md"]
    written += figures_lib.write_figures(task, rep, results_dict, figure_arrays, out_dir)
    return written


def summary_text(task: Task, rep: report_lib.SweepReport) -> str:
    """summary.md of a sweep's report: `summary.render`, or for a confirmation its own."""
    if rep.confirmation is None:
        return summary.render(rep, task.histograms)
    return confirm.confirmation_summary(
        list(rep.runs), dict(rep.confirmation), rep.select, rep.report, rep.direction, rep.metrics
    )


# Kept here for their callers; they live with the other figures.
heatmaps = figures_lib.heatmaps
task_figures = figures_lib.task_figures


def redraw(out_dir: str, log=print) -> list[str]:
    """Rewrite a finished sweep's summary.md and figures from its results.json, without
    training: every figure but the code grids (they need the trained parameters, which
    results.json does not hold; their files are left as they are). Returns the names written."""
    with open(os.path.join(out_dir, "results.json")) as f:
        res = json.load(f)
    task = tasks.make(res["task"])
    return write_outputs(task, res, [], out_dir, log=log, write_results=False)
