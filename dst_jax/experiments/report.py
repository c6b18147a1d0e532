"""Markdown report of a finished sweep, for docs/RESULTS.md.

    python -m experiments.report results/sbn [--select-on val|test] [--grid ESTIMATOR ...]
        [--figures] [--tensorboard LOGDIR]

Prints: the protocol (data, steps, seeds, selection), the best config per estimator with mean,
std (ddof = 1) and 95% Student-t interval over seeds, the paired comparisons (Decoupled ST's best
against every other estimator's best; every two-temperature estimator's best cell against its
best diagonal cell), where each optimum lies on its grid, how the selected test numbers change
when selecting on test instead of validation, and the machine and wall time from timing.json;
with `--grid ESTIMATOR`, that estimator's whole temperature grid of every metric.

    python -m experiments.report results/sbn --simulate-halving ETA [--rungs N]

replays successive halving (`dst_jax.sweep.halving`) on the stored curves of a sweep trained
without it, and prints per estimator the cell halving would have selected against the full
grid's choice, the model-steps it would have trained, and how well each two-temperature
estimator's first evaluation ranks its cells (Spearman against the last evaluation).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from dst_jax import confirm, runner, summary, tasks
from dst_jax.argtypes import int_at_least
from dst_jax.experiments.errors import report_error
from dst_jax.sweep import report as report_lib
from dst_jax.sweep import results
from dst_jax.tasks.base import direction


def _selection_shift(task, runs: list[dict[str, Any]], report: str) -> list[str]:
    """How much each estimator's reported test number changes between selecting its best config
    on validation and on test (the optimism of selecting on the number one reports)."""
    if not any(f"val_{task.headline_metric}" in r["final"] for r in runs):
        return []
    res = {"runs": runs, "config": {"sweep": {}}}
    on_val = report_lib.build_report(task, res, select_on="val")
    on_test = report_lib.build_report(task, res, select_on="test")
    lines = [
        f"Selected on validation vs on test (`{report}`, mean over seeds of the selected config):",
        "",
        "| estimator | on validation | on test | difference | same config |",
        "|---|---|---|---|---|",
    ]
    for est, a, b in report_lib.selection_shift(on_val, on_test):
        same = results.config_key(a) == results.config_key(b)
        diff = b[f"{report}_mean"] - a[f"{report}_mean"]
        lines.append(
            f"| {est} | {a[f'{report}_mean']:.4f} | {b[f'{report}_mean']:.4f} | "
            f"{diff:+.4f} | {'yes' if same else 'no'} |"
        )
    return lines


def grid_tables(
    task, runs: list[dict[str, Any]], estimator: str, select: str, metrics
) -> list[str]:
    """Each metric's mean over seeds on `estimator`'s (tau_f, tau_b) grid, one markdown table
    per metric (rows tau_f, columns tau_b; "-" where the grid has no run)."""
    if not any(r["estimator"] == estimator for r in runs):
        known = ", ".join(dict.fromkeys(r["estimator"] for r in runs))
        raise SystemExit(f"--grid {estimator}: no runs of it in this sweep (it has: {known})")
    lines = []
    for metric in metrics:
        tfs, tbs, mat = results.heatmap_grid(
            runs, metric, direction(task, select), estimator, select=select
        )
        lines += [
            "",
            f"`{metric}` of {estimator}, mean over seeds (rows tau_f, columns tau_b):",
            "",
            "| tau_f \\ tau_b | " + " | ".join(f"{b:g}" for b in tbs) + " |",
            "|" + "---|" * (len(tbs) + 1),
        ]
        for i, f in enumerate(tfs):
            cells = ("-" if not math.isfinite(v) else f"{v:.4f}" for v in mat[i])
            lines.append(f"| {f:g} | " + " | ".join(cells) + " |")
    return lines


def _read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bytes that are not UTF-8
        raise SystemExit(f"{path} cannot be read ({e}); {fix}") from None


def load(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results, timing) of the sweep in `out`; SystemExit with one line naming what is wrong
    with the folder or its files, and what to do."""
    if not out.exists():
        raise SystemExit(f"{out} does not exist; give the --out folder of a finished sweep")
    if not out.is_dir():
        raise SystemExit(f"{out} is a file, not a folder; give the sweep's --out folder")
    path = out / "results.json"
    if not path.exists():
        raise SystemExit(
            f"{out} holds no results.json: no sweep finished there (rerun its command to resume it)"
        )
    rerun = "rerun the sweep's command to write it again (its checkpoint/ resumes the sweep)"
    res = _read_json(path, rerun)
    needed = {"task": str, "config": dict, "runs": list}
    well_formed = (
        isinstance(res, dict)
        and all(isinstance(res.get(k), t) for k, t in needed.items())
        and {"steps", "steps_per_epoch", "eval_every", "sweep"} <= set(res["config"])
        and all(isinstance(r, dict) and {"estimator", "final"} <= set(r) for r in res["runs"])
    )
    if not well_formed:
        raise SystemExit(f"{path} is not a sweep's results file (task, config, runs); {rerun}")
    if not res["runs"]:
        raise SystemExit(f"{path} holds no runs; there is nothing to report")
    if res["task"] not in tasks.TASK_NAMES:
        raise SystemExit(
            f"{path} is a sweep of the task {res['task']!r}, which this version does not know "
            f"(known: {', '.join(tasks.TASK_NAMES)})"
        )
    timing: Any = {}
    if (out / "timing.json").exists():
        timing = _read_json(
            out / "timing.json", "delete it to report without the machine and wall time"
        )
        if not isinstance(timing, dict):
            raise SystemExit(
                f"{out / 'timing.json'} is not a timing file; delete it to report without the "
                "machine and wall time"
            )
    return res, timing


def report(out_dir: str, select_on: str | None = None, grids: tuple[str, ...] = ()) -> str:
    out = Path(out_dir)
    res, timing = load(out)
    task = confirm.task_from_results(res) if "confirmation" in res else tasks.make(res["task"])
    cfg = res["config"]
    runs = res["runs"]
    has_val = any(f"val_{task.headline_metric}" in r["final"] for r in runs)
    note = ""
    if select_on == "val" and not has_val:
        raise SystemExit(
            f"{out / 'results.json'} holds no validation metrics (the sweep ran without a "
            "validation split); report it with --select-on test"
        )
    if select_on is None:
        select_on = cfg["sweep"].get("select_on", "val") if has_val else "test"
        if not has_val:
            why = {
                None: "it ran before the split existed",
                0: "it ran with val_fraction = 0",
            }.get(cfg.get("task", {}).get("val_fraction"), "its runs hold no validation metrics")
            note = f" (this sweep has no validation split: {why})"
    rep = report_lib.build_report(task, res, select_on)
    select, report_metric, metrics = rep.select, rep.report, rep.metrics
    sizes = res.get("data", {}).get("split_sizes", {})
    seeds = cfg["sweep"]["seeds"]
    lines = [
        f"Data: {res['dataset']}"
        + (f" ({', '.join(f'{k} {v:,}' for k, v in sizes.items())})" if sizes else "")
        + "; "
        f"{len(runs)} runs x {cfg['steps']:,} steps ({cfg['steps'] / cfg['steps_per_epoch']:.2f} "
        f"epochs), evaluated every {cfg['eval_every']} steps; {seeds} seed(s) per config; "
        f"best configs selected on {select_on}{note}, reported on test"
        + (
            f"; successive halving by {cfg['halving']['eta']} at steps "
            f"{', '.join(f'{x:,}' for x in cfg['halving']['rungs'])}."
            if "halving" in cfg
            else "."
        ),
        "",
        runner.summary_text(task, rep),
    ]
    for est in grids:
        lines += grid_tables(task, runs, est, select, metrics)
    # A confirmation selects nothing (its configs are the screen's), so it has no shift to show.
    shift = [] if "confirmation" in res else _selection_shift(task, runs, report_metric)
    if shift:
        lines += ["", *shift]
    if timing:
        m = timing.get("machine", {})
        wall = timing.get("wall_s")
        hours = (
            f" ({wall / 3600:.2f} h)"
            if isinstance(wall, int | float) and math.isfinite(wall)
            else ""
        )
        lines += [
            "",
            f"Machine: {m.get('device')} ({m.get('platform')}, {m.get('n_devices')} "
            f"device(s), {m.get('host_cpus')} host CPUs), jax {m.get('jax')}; "
            f"wall time {wall} s{hours}.",
            f"Command: `{timing.get('command')}`",
        ]
        for part in timing.get("parts") or ():  # a merged folder: each part's own run
            lines.append(
                f"- part `{part.get('folder')}`: wall time {part.get('wall_s')} s; "
                f"`{part.get('command')}`"
            )
    return "\n".join(lines)


def _cell(row: dict[str, Any], lrs: int) -> str:
    label = f"({row['tau_f']:g}, {row['tau_b']:g})"
    return label + (f", lr {row['lr']:g}" if lrs > 1 else "")


def simulate_halving(out_dir: str, eta: int, n_rungs: int | None = None) -> str:
    """Markdown: successive halving by `eta` replayed on the curves of the sweep in `out_dir`
    (each refinement round halved on its own, as `--refine` with `--halving` trains it)."""
    from dst_jax.sweep import halving

    res, _ = load(Path(out_dir))
    task = tasks.make(res["task"])
    cfg, runs = res["config"], res["runs"]
    if any("rung" in r for r in runs):
        raise SystemExit(f"{out_dir} was trained with halving already; replay a full sweep")
    select_on = cfg["sweep"].get("select_on", "val")
    select, report_metric = f"{select_on}_{task.headline_metric}", f"test_{task.headline_metric}"
    d = direction(task, select)
    try:
        rungs = halving.rung_steps(cfg["steps"], cfg["eval_every"], eta, n_rungs)
        marked = halving.replay(runs, select, d, eta, rungs)
    except ValueError as e:
        raise SystemExit(f"error: --simulate-halving {eta}: {e}") from None
    full = report_lib.compute(runs, select, report_metric, d, (report_metric,)).best
    halved = report_lib.compute(marked, select, report_metric, d, (report_metric,)).best
    lrs = len({r["lr"] for r in runs})
    head = [
        "estimator",
        "full grid's choice",
        f"`{select}`",
        f"`{report_metric}`",
        "halving's choice",
        f"`{select}`",
        f"`{report_metric}`",
        "same",
    ]
    lines = [
        f"Successive halving by {eta} replayed on {out_dir} ({len(runs)} runs x "
        f"{cfg['steps']:,} steps; rungs at steps {', '.join(f'{s:,}' for s in rungs)}; cells "
        f"ranked by mean `{select}` over seeds at each rung):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    changed = 0
    for est, a in full.items():
        b = halved.get(est)
        same = b is not None and results.config_key(a) == results.config_key(b)
        changed += not same
        cells = [est, _cell(a, lrs), summary._fmt(a[f"{select}_mean"])]
        cells.append(summary._fmt(a[f"{report_metric}_mean"]))
        if b is None:
            cells += ["-", "-", "-"]
        else:
            cells += [_cell(b, lrs), summary._fmt(b[f"{select}_mean"])]
            cells.append(summary._fmt(b[f"{report_metric}_mean"]))
        lines.append("| " + " | ".join([*cells, "yes" if same else "no"]) + " |")
    verdict = (
        f"would have changed the selection of {changed} of {len(full)} estimator(s)"
        if changed
        else f"would not have changed the selection of any of the {len(full)} estimators"
    )
    lines += ["", f"Halving {verdict}.", "", "Cells alive per rung:", ""]
    lines.append(halving.rung_table(marked, rungs))
    *earlier, late = runs[0]["curve"]["step"]
    two = [
        est
        for est in dict.fromkeys(r["estimator"] for r in runs)
        if getattr(summary._entry(est), "n_temperatures", 0) == 2
    ]
    if two and earlier:
        head = ["estimator", "cells", *(f"Spearman, step {s:,}" for s in earlier)]
        head.append(f"final best cell's rank at step {earlier[0]:,}")
        lines += [
            "",
            f"The cells' ranking at each evaluation against the last (step {late:,}), by mean "
            f"`{select}` over seeds: Spearman's rank correlation, and where the cell that is "
            "best at the last evaluation ranked at the first:",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for est in two:
            agree = [halving.rank_agreement(runs, est, select, d, s, late) for s in earlier]
            n, rank = agree[0]["n_cells"], agree[0]["best_rank_early"]
            third = "top third" if rank <= math.ceil(n / 3) else "not in the top third"
            rhos = [f"{a['spearman']:.3f}" for a in agree]
            lines.append(f"| {est} | {n} | " + " | ".join(rhos) + f" | {rank} of {n} ({third}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out_dir", metavar="DIR", help="a finished sweep's folder (its results.json)")
    p.add_argument("--select-on", choices=("val", "test"), default=None)
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="ESTIMATOR",
        help="also print this estimator's whole (tau_f, tau_b) grid of every metric (repeatable)",
    )
    p.add_argument(
        "--simulate-halving",
        type=int_at_least("--simulate-halving", 2),
        metavar="ETA",
        help="replay successive halving by ETA on the stored curves instead of the report",
    )
    p.add_argument(
        "--rungs",
        type=int_at_least("--rungs", 2),
        metavar="N",
        help="rungs of --simulate-halving (default: as many as fit the evaluation steps)",
    )
    p.add_argument(
        "--figures",
        action="store_true",
        help="first rewrite the folder's figures and summary.md from results.json (no training)",
    )
    p.add_argument(
        "--tensorboard",
        metavar="LOGDIR",
        help="also write every run's curves and hyperparameters as TensorBoard event files "
        "under LOGDIR (one folder per config and seed; needs the extra 'tensorboard')",
    )
    args = p.parse_args(argv)
    if args.rungs is not None and args.simulate_halving is None:
        p.error("--rungs needs --simulate-halving ETA")
    try:
        if args.simulate_halving is not None:
            print(simulate_halving(args.out_dir, args.simulate_halving, args.rungs))
            return 0
        if args.tensorboard:
            from dst_jax import tensorboard_export

            res, _ = load(Path(args.out_dir))
            try:
                runs = tensorboard_export.write(res, args.tensorboard)
            except ImportError as e:
                raise SystemExit(str(e)) from None
            print(
                f"wrote {len(runs)} runs to {args.tensorboard} (view: tensorboard --logdir "
                f"{args.tensorboard})\n"
            )
        if args.figures:
            load(Path(args.out_dir))  # a one-line error for a folder that is not a sweep's
            written = runner.redraw(args.out_dir, log=lambda *_: None)
            print(f"rewrote in {args.out_dir}: {', '.join(written)}\n")
        text = report(args.out_dir, args.select_on, tuple(args.grid))
    except SystemExit as e:
        return report_error(e)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
