"""Markdown report of a finished sweep, for docs/RESULTS.md.

    python -m experiments.report results/sbn [--metric test_acc_stoch]

Prints: the best config per estimator (mean +- std over seeds), where Decoupled ST's best
(tau_f, tau_b) lies against the diagonal tau_f = tau_b, the best diagonal cell, and the machine and
wall time from timing.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dst_jax import tasks
from dst_jax.plotting import best_cell, heatmap_grid
from dst_jax.sweep.results import best_per_estimator, format_summary


def report(out_dir: str, metric: str | None = None) -> str:
    out = Path(out_dir)
    res = json.loads((out / "results.json").read_text())
    timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else {}
    task = tasks.make(res["task"])
    metric = metric or task.headline_metric
    direction = task.metric_directions.get(metric, "max")
    metrics = tuple(dict.fromkeys((metric, *task.heatmap_metrics, "train_loss")))
    runs = res["runs"]
    estimators = list(dict.fromkeys(r["estimator"] for r in runs))
    best = best_per_estimator(runs, metric, direction, metrics)
    cfg = res["config"]
    lines = [
        f"Data: {res['dataset']}; {len(runs)} runs x {cfg['steps']} steps "
        f"({cfg['steps'] / cfg['steps_per_epoch']:.2f} epochs), evaluated every "
        f"{cfg['eval_every']} steps; seeds per config: {cfg['sweep']['seeds']}.",
        "",
        f"Best config per estimator, by mean final `{metric}` over seeds:",
        "",
        format_summary(best, metrics, estimators),
    ]
    tfs, tbs, mat = heatmap_grid(runs, metric, direction)
    if mat.size and np.isfinite(mat).any():
        i, j = best_cell(mat, direction)
        diag = [(t, mat[tfs.index(t), tbs.index(t)]) for t in tfs if t in tbs]
        diag = [(t, v) for t, v in diag if np.isfinite(v)]
        lines += [
            "",
            f"Decoupled ST heatmap ({len(tfs)} x {len(tbs)}): best cell tau_f = "
            f"{tfs[i]:g}, tau_b = {tbs[j]:g} ({metric} = {mat[i, j]:.4f}); "
            f"tau_b / tau_f = {tbs[j] / tfs[i]:.3g}.",
        ]
        if diag:
            pick = max if direction == "max" else min
            td, vd = pick(diag, key=lambda tv: tv[1])
            gain = (mat[i, j] - vd) if direction == "max" else (vd - mat[i, j])
            better = "higher" if direction == "max" else "lower"
            lines.append(
                f"Best cell on the diagonal tau_f = tau_b: {td:g} ({metric} = {vd:.4f}); "
                f"the best cell is better by {gain:.4f} ({better} is better)."
            )
    if timing:
        m = timing.get("machine", {})
        lines += [
            "",
            f"Machine: {m.get('device')} ({m.get('platform')}, {m.get('n_devices')} "
            f"device(s), {m.get('host_cpus')} host CPUs), jax {m.get('jax')}; "
            f"wall time {timing.get('wall_s')} s.",
            f"Command: `{timing.get('command')}`",
        ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out_dir")
    p.add_argument("--metric", default=None)
    args = p.parse_args()
    print(report(args.out_dir, args.metric))


if __name__ == "__main__":
    main()
