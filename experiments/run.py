"""Command line: run a task's sweep and write its results.

    python -m experiments.run {sbn,cae,dlgn} --out DIR [--smoke] [flags]

The task's protocol comes from `experiments/configs/<task>.py` (`get_config(smoke)`); flags
override parts of it. Rerunning the same command after an interruption resumes the sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import shlex
import sys
import typing

from dst_jax import tasks
from dst_jax.sweep.runner import run_sweep


def _floats(flag: str):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} takes a comma-separated list of numbers, e.g. 0.1,0.5,1; got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"{flag} needs at least one value")
        return values

    return parse


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes an integer, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be at least 1, got {v}")
        return v

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", choices=tasks.TASK_NAMES)
    p.add_argument("--out", required=True, help="output folder (results, plots, checkpoint)")
    p.add_argument(
        "--data-dir", default=None, help="data folder (default: $DST_DATA_DIR, else the user cache)"
    )
    p.add_argument("--smoke", action="store_true", help="tiny grid, a few hundred steps")
    p.add_argument("--estimators", type=_names, help="comma list, e.g. decoupled_st,softmax_ste")
    p.add_argument("--tau-f", type=_floats("--tau-f"), help="forward temperatures (comma list)")
    p.add_argument("--tau-b", type=_floats("--tau-b"), help="backward temperatures (comma list)")
    p.add_argument("--seeds", type=_positive_int("--seeds"), help="number of seeds")
    p.add_argument("--lr", type=_floats("--lr"), help="learning rates (comma list)")
    p.add_argument("--epochs", type=float, help="training epochs per run")
    p.add_argument("--max-steps", type=_positive_int("--max-steps"), help="cap on training steps")
    p.add_argument(
        "--eval-every", type=_positive_int("--eval-every"), help="steps between test evaluations"
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int("--chunk-size"),
        help="configs per compiled chunk (default: estimated from device memory)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a task config field, e.g. --set beta=0 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _override_task_config(config, assignments: list[str]):
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    changes = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}"
            )
        hint = hints[key]
        origin = typing.get_origin(hint)
        try:
            if text.lower() == "none":
                value = None
            elif hint is bool:
                value = text.lower() in ("1", "true", "yes")
            elif origin is tuple or hint is tuple:
                value = tuple(int(v) for v in text.split(",") if v)
            elif (
                hint is int
                or (origin is typing.Union and int in typing.get_args(hint))
                or "int" in str(hint)
            ):
                value = int(text)
            elif hint is float or "float" in str(hint):
                value = float(text)
            else:
                value = text
        except ValueError:
            raise SystemExit(f"--set {item!r}: cannot read {text!r} as {hint}") from None
        changes[key] = value
    return dataclasses.replace(config, **changes)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg_module = importlib.import_module(f"experiments.configs.{args.task}")
    task_config, sweep = cfg_module.get_config(smoke=args.smoke)
    task_config = _override_task_config(task_config, args.set)
    overrides = {
        "estimators": args.estimators,
        "tau_f": args.tau_f,
        "tau_b": args.tau_b,
        "seeds": args.seeds,
        "lrs": args.lr,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "eval_every": args.eval_every,
        "chunk_size": args.chunk_size,
    }
    sweep = dataclasses.replace(sweep, **{k: v for k, v in overrides.items() if v is not None})
    task = tasks.make(args.task, task_config)
    try:
        command = "python -m experiments.run " + shlex.join(sys.argv[1:] if argv is None else argv)
        run_sweep(
            task, sweep, args.out, args.data_dir, progress=not args.no_progress, command=command
        )
    except ValueError as e:  # bad input: a clear message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
