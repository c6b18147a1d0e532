"""Command line: train a finished sweep's selected configs again on fresh seeds.

    python -m experiments.confirm FROM_DIR [FROM_DIR ...] --out DIR --seeds K \
        (--epochs E | --max-steps N)

Reads FROM_DIR/results.json (the screen), takes each estimator's selected config and each
two-temperature estimator's best diagonal cell, and trains exactly those on K seeds the screen
did not use (one past its largest seed onwards, or from --first-seed). The output folder is an
ordinary sweep folder (results.json with a "confirmation" record, summary.md, curves.png, the
task's figures, timing.json) that `python -m experiments.report` reads; rerunning the same
command after an interruption resumes it.

Several FROM_DIRs are one screen split by estimator (parts run on separate machines or days):
they must share the task, its config, the length, the seeds and the selection rule, and no
estimator may be in two of them; each estimator's config is then selected from the part that
trained it, exactly as from the whole grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from dst_jax import confirm, runner
from dst_jax.argtypes import int_at_least, names, positive_float, positive_int
from dst_jax.experiments import report
from dst_jax.experiments.errors import report_error
from dst_jax.experiments.run import check_out_dir
from dst_jax.sweep import results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.confirm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "from_dirs",
        metavar="FROM_DIR",
        nargs="+",
        help="a finished sweep's results folder (several: one screen split by estimator)",
    )
    p.add_argument("--out", required=True, help="output folder (results, figures, checkpoint)")
    p.add_argument("--seeds", type=positive_int("--seeds"), default=3, help="fresh seeds (3)")
    p.add_argument(
        "--first-seed",
        type=int_at_least("--first-seed", 0),
        help="first fresh seed (default: one past the screen's largest)",
    )
    p.add_argument("--epochs", type=positive_float("--epochs"), help="training epochs per run")
    p.add_argument("--max-steps", type=positive_int("--max-steps"), help="training steps per run")
    p.add_argument(
        "--eval-every", type=positive_int("--eval-every"), help="steps between evaluations"
    )
    p.add_argument("--estimators", type=names, help="confirm only these (comma list)")
    p.add_argument(
        "--no-diagonals",
        action="store_true",
        help="skip each two-temperature estimator's best diagonal cell (by default it is "
        "confirmed too)",
    )
    p.add_argument(
        "--reuse",
        metavar="DIR",
        nargs="+",
        default=(),
        help="finished sweeps or confirmations whose runs of the same config, seed and protocol "
        "are taken as they are instead of trained again",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int("--chunk-size"),
        help="configs per compiled chunk (default: estimated from device memory)",
    )
    p.add_argument(
        "--data-dir", default=None, help="data folder (default: $DST_DATA_DIR, else the user cache)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    check_out_dir(args.out)
    if args.epochs is None and args.max_steps is None:
        raise SystemExit("error: give the confirmation's length: --epochs E or --max-steps N")
    try:
        screen = confirm.merge_screens([(d, confirm.load_screen(d)) for d in args.from_dirs])
        task = confirm.task_from_results(screen)
        chosen = confirm.selected_configs(
            task, screen, args.estimators, diagonals=not args.no_diagonals
        )
        seeds = confirm.fresh_seeds(screen, args.seeds, args.first_seed)
        sweep = confirm.confirmation_sweep(
            screen["config"]["sweep"],
            chosen,
            seeds,
            epochs=args.epochs,
            max_steps=args.max_steps,
            eval_every=args.eval_every,
            chunk_size=args.chunk_size,
        )
        record = confirm.confirmation_record(args.from_dirs, task, screen, chosen, seeds)
        runs = confirm.confirmation_runs(chosen, seeds)
        reused: dict = {}
        dropped = False  # a source's train_* were measured another way and are left out
        for source_dir in args.reuse:
            source = report.load(Path(source_dir))[0]
            found = confirm.reusable_records(source_dir, source, task, sweep, runs)
            reused.update(found)
            dropped |= bool(found) and results.train_metrics_of(source) != results.TRAIN_METRICS
        if reused:
            record["reused"] = {"from": list(args.reuse), "runs": len(reused)}
            if dropped:
                record["reused"]["train_metrics_dropped"] = True
        command = "python -m experiments.confirm " + shlex.join(
            sys.argv[1:] if argv is None else argv
        )
        to_train = [
            r for r in runs if (results.config_key(dataclasses.asdict(r)), r.seed) not in reused
        ]
        log = print
        prepared = runner.prepare(task, sweep, args.out, args.data_dir, runs=to_train, log=log)
        if reused:
            log(f"reused {len(reused)} finished runs from {', '.join(args.reuse)}")
        trained = (
            runner.train(task, sweep, prepared, progress=not args.no_progress, log=log)
            if to_train
            else runner.Trained([], [], {})
        )
        trained.records, trained.figures = confirm.in_run_order(
            runs, trained.records, reused, trained.figures
        )
        runner.write(task, prepared, trained, args.out, command=command, confirmation=record)
    except (ValueError, OSError, SystemExit) as e:  # bad input, missing data: not a traceback
        return report_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
