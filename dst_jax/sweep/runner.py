"""`run_sweep`: a whole sweep from configs to files (results.json, summary, PNGs, checkpoint)."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from typing import Any

import jax

from dst_jax import plotting
from dst_jax.io import atomic_open, atomic_write_json
from dst_jax.sweep import grid
from dst_jax.sweep.checkpoint import Checkpoint
from dst_jax.sweep.config import SweepConfig
from dst_jax.sweep.engine import train_runs
from dst_jax.sweep.results import best_per_estimator, format_summary
from dst_jax.tasks.base import Task


def machine_info() -> dict[str, Any]:
    devs = jax.devices()
    return {
        "platform": devs[0].platform,
        "device": devs[0].device_kind,
        "n_devices": len(devs),
        "n_processes": jax.process_count(),
        "host_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
    }


def run_sweep(
    task: Task,
    sweep: SweepConfig,
    out_dir: str,
    data_dir: str | None = None,
    *,
    progress: bool = True,
    callback=None,
    log=print,
    command: str | None = None,
) -> dict[str, Any]:
    """Train the sweep's grid and write its results into `out_dir`; returns the results dict.

    Files: `results.json` (DESIGN.md section 3; deterministic for a given sweep, so an interrupted
    and resumed sweep writes the same file), `timing.json` (machine, wall and compile times),
    `summary.md`, `heatmap_<metric>.png`, `curves.png`, the task's own figures, and
    `checkpoint/` (resume state; safe to delete once the sweep is done).
    """
    t0 = time.perf_counter()
    runs = grid.expand(sweep, task.estimators, getattr(task, "untempered_estimators", ()))
    data, info = task.load_data(data_dir)
    n_train = int(data["train_x"].shape[0])
    steps = sweep.total_steps(n_train, task.config.batch_size)
    eval_every = min(sweep.eval_every, steps)
    config = {
        "task": dataclasses.asdict(task.config),
        "sweep": dataclasses.asdict(sweep),
        "steps": steps,
        "steps_per_epoch": n_train // task.config.batch_size,
        "eval_every": eval_every,
    }
    ckpt = Checkpoint(out_dir)
    is_writer = jax.process_index() == 0
    ckpt.open(
        {
            "task": task.name,
            "dataset": info.get("dataset"),
            "config": {**config, "sweep": {**config["sweep"], "chunk_size": None}},
            "runs": [dataclasses.asdict(r) for r in runs],
        }
    )
    log(
        f"{task.name}: {len(runs)} runs x {steps} steps on {info.get('dataset')} "
        f"({jax.device_count()} {jax.devices()[0].platform} device(s)); out: {out_dir}"
    )
    out = train_runs(
        task,
        data,
        runs,
        steps=steps,
        eval_every=eval_every,
        chunk_size=sweep.chunk_size,
        checkpoint=ckpt,
        checkpoint_every_s=sweep.checkpoint_every_s,
        progress=progress,
        callback=callback,
    )
    results = {
        "task": task.name,
        "dataset": info.get("dataset"),
        "config": config,
        "data": info,
        "runs": out.runs,
    }
    directions = task.metric_directions
    headline = task.headline_metric
    metrics = tuple(dict.fromkeys((headline, *task.heatmap_metrics, "train_loss")))
    best = best_per_estimator(out.runs, headline, directions.get(headline, "max"), metrics)
    summary = format_summary(best, metrics, list(dict.fromkeys(r.estimator for r in runs)))
    if is_writer:
        atomic_write_json(os.path.join(out_dir, "results.json"), results)
        figures = plotting.sweep_figures(results, out_dir, task)
        figures += task.figures(out_dir, results, out.best_params, data)
        atomic_write_json(
            os.path.join(out_dir, "timing.json"),
            {
                "machine": machine_info(),
                "wall_s": round(time.perf_counter() - t0, 2),
                "per_estimator": out.timing,
                "command": command or " ".join(sys.argv),
            },
        )
        with atomic_open(os.path.join(out_dir, "summary.md"), "w") as f:
            f.write(f"Best config per estimator (by mean {headline} over seeds)\n\n{summary}\n")
        log(f"\nBest config per estimator (by mean {headline} over seeds):\n{summary}")
        log(
            "wrote: results.json, timing.json, summary.md, "
            + ", ".join(os.path.basename(p) for p in figures)
        )
    return results
