"""A finished sweep's curves as TensorBoard event files, for the dashboards researchers use.

One run folder per config and seed (`<estimator>/tau_f=...,tau_b=...,lr=.../seed=N`), holding
every scalar metric of its curve by step, and the run's hyperparameters and final metrics in
the HParams plugin, so that the whole grid can be filtered, sorted and compared in
TensorBoard's table and parallel-coordinates views:

    python -m experiments.report results/sbn --tensorboard runs/tb
    tensorboard --logdir runs/tb

Written with tensorboardX (the optional extra `tensorboard`: pip install 'dst_jax[tensorboard]').
"""

from __future__ import annotations

import math
import os
from typing import Any

from dst_jax.sweep import grid

INSTALL = "pip install 'dst_jax[tensorboard]' (or pip install tensorboardX)"


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def run_name(run: dict[str, Any]) -> str:
    """`decoupled_st/tau_f=0.1,tau_b=0.3,lr=0.001/seed=0`, with every run hyperparameter that
    is not at its default."""
    parts = [f"tau_f={run['tau_f']:g}", f"tau_b={run['tau_b']:g}", f"lr={run['lr']:g}"]
    for f in grid.HPARAMS:
        value = run.get(f.name, f.default)
        if value != f.default:
            parts.append(f"{f.name}={value:g}" if isinstance(value, float) else f"{f.name}={value}")
    return f"{run['estimator']}/{','.join(parts)}/seed={run['seed']}"


def hparams_of(run: dict[str, Any]) -> dict[str, Any]:
    """The run's hyperparameters as HParams values (strings, numbers, booleans; unset ones
    left out)."""
    out = {k: run[k] for k in ("estimator", "tau_f", "tau_b", "lr", "seed")}
    for f in grid.HPARAMS:
        value = run.get(f.name, f.default)
        if value is not None:
            out[f.name] = value
    out["diverged"] = bool(run.get("diverged", False))
    return out


def write(results_dict: dict[str, Any], logdir: str) -> list[str]:
    """Write every run of `results_dict` (a results.json) under `logdir`; returns the run
    folders, relative to `logdir`. Raises ImportError, with how to install it, without
    tensorboardX."""
    try:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams
    except ImportError as e:
        raise ImportError(f"TensorBoard export needs tensorboardX: {INSTALL}") from e
    written = []
    for run in results_dict["runs"]:
        name = run_name(run)
        curve = run.get("curve", {})
        steps = curve.get("step", [])
        writer = SummaryWriter(logdir=os.path.join(logdir, *name.split("/")))
        try:
            for metric, values in curve.items():
                if metric == "step":
                    continue
                for step, v in zip(steps, values, strict=False):
                    if _number(v):
                        writer.add_scalar(metric, v, step)
            finals = {k: v for k, v in run.get("final", {}).items() if _number(v)}
            for summary in hparams(hparams_of(run), finals):
                writer.file_writer.add_summary(summary)
        finally:
            writer.close()
        written.append(name)
    return written
