"""Command line: run a task's sweep and write its results.

    python -m experiments.run {sbn,cae,dlgn} --out DIR [--smoke] [flags]

The task's protocol comes from `experiments/configs/<task>.py` (`get_config(smoke)`); flags
override parts of it. Rerunning the same command after an interruption resumes the sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shlex
import socket
import sys
import time
import types
import typing
from pathlib import Path

from dst_jax import compilation_cache, tasks
from dst_jax.argtypes import floats, int_at_least, names, positive_float, positive_int
from dst_jax.runner import run_sweep
from dst_jax.sweep import grid
from dst_jax.sweep.config import PRNG_IMPLS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_epilog(),
    )
    p.add_argument("task", choices=tasks.TASK_NAMES)
    p.add_argument("--out", required=True, help="output folder (results, plots, checkpoint)")
    p.add_argument(
        "--data-dir", default=None, help="data folder (default: $DST_DATA_DIR, else the user cache)"
    )
    p.add_argument("--smoke", action="store_true", help="tiny grid, a few hundred steps")
    p.add_argument("--estimators", type=names, help="comma list, e.g. decoupled_st,softmax_ste")
    p.add_argument("--tau-f", type=floats("--tau-f"), help="forward temperatures (comma list)")
    p.add_argument("--tau-b", type=floats("--tau-b"), help="backward temperatures (comma list)")
    p.add_argument(
        "--tau-grid",
        action="append",
        metavar="NAME=TAU_F,.../TAU_B,...",
        help="temperature axes of one estimator instead of --tau-f/--tau-b, e.g. "
        "decoupled_reinmax=0.1,0.5,2/0.3,1,3 (repeatable)",
    )
    p.add_argument("--seeds", type=positive_int("--seeds"), help="number of seeds")
    p.add_argument("--lr", type=floats("--lr"), help="learning rates (comma list)")
    p.add_argument("--epochs", type=positive_float("--epochs"), help="training epochs per run")
    p.add_argument("--max-steps", type=positive_int("--max-steps"), help="cap on training steps")
    p.add_argument(
        "--eval-every",
        type=positive_int("--eval-every"),
        help="steps between evaluations (validation; test too with --test-at every)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int("--chunk-size"),
        help="configs per compiled chunk (default: estimated from device memory)",
    )
    p.add_argument(
        "--select-on",
        choices=("val", "test"),
        help="split whose headline metric picks the best config (default: val)",
    )
    p.add_argument(
        "--test-at",
        choices=("every", "end"),
        help="evaluate the test split at every evaluation or only after the last step "
        "(default: end)",
    )
    p.add_argument(
        "--refine",
        type=int_at_least("--refine", 0),
        metavar="N",
        help="up to N rounds extending a temperature axis whose optimum is on its edge",
    )
    p.add_argument(
        "--halving",
        type=int_at_least("--halving", 2),
        metavar="ETA",
        help="successive halving: at each rung only the best 1/ETA of each estimator's cells "
        "continue (rungs at steps / ETA^k, rounded to evaluation steps)",
    )
    p.add_argument(
        "--rungs",
        type=int_at_least("--rungs", 2),
        metavar="N",
        help="number of halving rungs (default: as many as keep the first rung at least one "
        "evaluation interval long)",
    )
    p.add_argument(
        "--prng",
        choices=PRNG_IMPLS,
        help="JAX PRNG implementation of every random stream (default: threefry2x32)",
    )
    p.add_argument(
        "--checkpoint-every-s",
        type=positive_float("--checkpoint-every-s"),
        help="save mid-chunk state at most this often (seconds; default 60)",
    )
    hp = p.add_argument_group("hyperparameters of a run (each a grid axis: comma lists)")
    for f in grid.HPARAMS:
        choices = f.metadata["choices"]
        hp.add_argument(
            f.metadata["flag"],
            dest=f"hp_{f.name}",
            type=_axis_values(f),
            help=f"{f.metadata['help']}" + (f"; one of {', '.join(choices)}" if choices else ""),
        )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a task config field, e.g. --set beta=0 (repeatable; the fields of each "
        "task are listed below)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help="do not read or write JAX's persistent compilation cache (default: on, in "
        "~/.cache/dst_jax/jax; DST_JAX_COMPILATION_CACHE=0 turns it off too, =DIR moves it)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results and figures of a different sweep in --out (default: refuse)",
    )
    multi = p.add_argument_group(
        "several hosts",
        "Start the same command on every host with --distributed and --out on a file system they "
        "share. On Cloud TPU, SLURM, Open MPI and Kubernetes jax.distributed finds the coordinator "
        "and process ids itself; elsewhere give all three (or set JAX_COORDINATOR_ADDRESS).",
    )
    multi.add_argument(
        "--distributed", action="store_true", help="call jax.distributed.initialize() first"
    )
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    multi.add_argument("--num-processes", type=positive_int("--num-processes"))
    multi.add_argument("--process-id", type=int, help="this process's id, 0 to num-processes - 1")
    multi.add_argument(
        "--distributed-timeout",
        type=positive_int("--distributed-timeout"),
        default=120,
        help="seconds to wait for the coordinator and the other processes (default 120)",
    )
    _readable_metavars(p)
    return p


# Metavars of flags that take a value, by destination (the default would be its upper-case
# name, e.g. HP_LR_SCHEDULE).
_METAVARS = {
    "out": "DIR",
    "data_dir": "DIR",
    "estimators": "NAME[,NAME...]",
    "tau_f": "TAU[,TAU...]",
    "tau_b": "TAU[,TAU...]",
    "seeds": "N",
    "lr": "LR[,LR...]",
    "epochs": "EPOCHS",
    "max_steps": "STEPS",
    "eval_every": "STEPS",
    "chunk_size": "N",
    "checkpoint_every_s": "SECONDS",
    "num_processes": "N",
    "process_id": "ID",
    "distributed_timeout": "SECONDS",
}


def _readable_metavars(p: argparse.ArgumentParser) -> None:
    """Give every valued flag without a metavar a readable one: from `_METAVARS`, from the
    run hyperparameter it sets (a comma list of names or numbers), else its own name."""
    hparams = {f"hp_{f.name}": f for f in grid.HPARAMS}
    for action in p._actions:
        if action.metavar is not None or action.nargs == 0 or not action.option_strings:
            continue
        if action.choices:
            continue  # argparse shows {a,b,c}
        if action.dest in hparams:
            f = hparams[action.dest]
            one = "NAME" if f.metadata["choices"] else "VALUE"
            action.metavar = f"{one}[,{one}...]"
        else:
            action.metavar = _METAVARS.get(action.dest, action.dest.upper())


def _type_name(hint) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def set_fields(task: str) -> list[tuple[str, str, object]]:
    """(name, type, value in the task's full protocol) of every task config field that `--set`
    accepts, from the task's config dataclass."""
    config, _ = importlib.import_module(f"dst_jax.experiments.configs.{task}").get_config(
        smoke=False
    )
    hints = typing.get_type_hints(type(config))
    return [
        (f.name, _type_name(hints[f.name]), getattr(config, f.name))
        for f in dataclasses.fields(config)
    ]


def _as_typed(value) -> str:
    """A value as one types it after `--set KEY=`."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def _epilog() -> str:
    lines = [
        "example (a small sweep of two estimators, resumable, then its report):",
        "  python -m experiments.run sbn --out runs/sbn-small --smoke \\",
        "      --estimators decoupled_st,softmax_ste --seeds 2 --set n_eval_samples=8",
        "  python -m experiments.report runs/sbn-small",
        "",
        "task fields for --set KEY=VALUE (type, value in the full protocol; tuples as 1,2,3):",
    ]
    for task in tasks.TASK_NAMES:
        lines.append(f"  {task}:")
        for name, hint, value in set_fields(task):
            lines.append(f"    {name}: {hint} = {_as_typed(value)}")
    return "\n".join(lines)


def _tau_grid(text: str) -> tuple[str, tuple[tuple[float, ...], tuple[float, ...]]]:
    """`NAME=F1,F2/B1,B2` -> (NAME, ((F1, F2), (B1, B2))); the backward list may be omitted."""
    name, sep, axes = text.partition("=")
    f_text, _, b_text = axes.partition("/")
    try:
        f = floats("--tau-grid")(f_text)
        b = floats("--tau-grid")(b_text) if b_text else f
    except argparse.ArgumentTypeError:
        f = ()
    if not sep or not name or not f:
        raise SystemExit(
            f"error: --tau-grid {text!r}: expected NAME=TAU_F,.../TAU_B,..., e.g. "
            "decoupled_reinmax=0.1,0.5,2/0.3,1,3"
        )
    return name.strip(), (f, b)


def _axis_values(field):
    """argparse type for a hyperparameter's comma list of values (see `grid.Run`)."""
    flag, parse, choices = (field.metadata[k] for k in ("flag", "parse", "choices"))

    def read(text: str) -> tuple:
        try:
            values = tuple(parse(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: cannot read {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{flag} needs at least one value")
        bad = [v for v in values if choices and v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"{flag} must be one of {', '.join(choices)}")
        return values

    return read


def init_distributed(args: argparse.Namespace) -> None:
    """jax.distributed.initialize() from the flags, before anything touches a device."""
    manual = {
        "coordinator_address": args.coordinator,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
    }
    given = {k: v for k, v in manual.items() if v is not None}
    if not args.distributed:
        if given:
            raise SystemExit("--coordinator, --num-processes and --process-id need --distributed")
        return
    if args.process_id is not None and not (
        args.num_processes and 0 <= args.process_id < args.num_processes
    ):
        raise SystemExit(
            f"--process-id must lie in [0, --num-processes); got {args.process_id} with "
            f"--num-processes {args.num_processes}"
        )
    import jax

    where = args.coordinator or "the cluster's coordinator"
    print(
        f"process {args.process_id if args.process_id is not None else '?'}: waiting for {where} "
        f"and the other processes (up to {args.distributed_timeout} s, --distributed-timeout)",
        file=sys.stderr,
        flush=True,
    )
    if args.coordinator and args.process_id not in (None, 0):
        _wait_for_coordinator(args.coordinator, args.distributed_timeout)
    jax.distributed.initialize(**given, initialization_timeout=args.distributed_timeout)


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Connect to the coordinator's port until it answers; exit with a clear message if it does
    not within `timeout_s` (JAX itself would abort the process without one)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--coordinator takes HOST:PORT, got {address!r}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise SystemExit(
                    f"error: the coordinator at {address} did not answer within {timeout_s} s "
                    f"({e.strerror or e}); start process 0 there first, or check --coordinator "
                    "(raise --distributed-timeout to wait longer)"
                ) from None
            time.sleep(0.5)


def _field_value(hint, text: str):
    """`text` read as a value of type `hint` (int, float, bool, str, tuple[T, ...], X | None)."""
    if text.lower() == "none":
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    if typing.get_origin(hint) is tuple:
        element = typing.get_args(hint)[0]
        return tuple(element(v) for v in text.split(",") if v)
    return hint(text)


def _override_task_config(config, assignments: list[str]):
    hints = typing.get_type_hints(type(config))
    changes = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or key not in hints:
            raise SystemExit(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(hints)}"
            )
        try:
            changes[key] = _field_value(hints[key], text)
        except (ValueError, TypeError):
            raise SystemExit(f"--set {item!r}: cannot read {text!r} as {hints[key]}") from None
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as e:  # the task's Config refuses values that make its metrics meaningless
        raise SystemExit(f"error: --set {' '.join(assignments)}: {e}") from None


def check_out_dir(out: str) -> None:
    """Refuse an output path that is empty (an unset shell variable) or an existing file, before
    any data are loaded."""
    if not out.strip():
        raise SystemExit(
            "error: --out is empty; give the folder for results, figures and checkpoint"
        )
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise SystemExit(f"error: --out {out} is a file, not a folder; choose another path")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SystemExit(f"error: --out {out} lies under {parent}, which is a file")


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; bad input gives one line on stderr and exit code 2."""
    try:
        return _main(argv)
    except SystemExit as e:
        if not isinstance(e.code, str):
            raise  # argparse's own exits (usage errors already print one line with code 2)
        message = e.code if e.code.startswith("error:") else f"error: {e.code}"
        print(message, file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # `--out=~/x` reaches us unexpanded (the shell expands only a leading `~` of a word).
    args.out = os.path.expanduser(args.out)
    check_out_dir(args.out)
    if args.estimators is not None and not args.estimators:
        raise SystemExit("error: --estimators is empty; name at least one, e.g. decoupled_st")
    if not args.no_compilation_cache:
        compilation_cache.enable()
    init_distributed(args)
    cfg_module = importlib.import_module(f"dst_jax.experiments.configs.{args.task}")
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
        "select_on": args.select_on,
        "test_at": args.test_at,
        "refine": args.refine,
        "prng": args.prng,
        "halving": args.halving,
        "rungs": args.rungs,
        "checkpoint_every_s": args.checkpoint_every_s,
    }
    if args.tau_grid:
        overrides["estimator_taus"] = dict(_tau_grid(text) for text in args.tau_grid)
    axes = {f.name: getattr(args, f"hp_{f.name}") for f in grid.HPARAMS}
    axes = {k: v for k, v in axes.items() if v is not None}
    if axes:
        overrides["axes"] = {**sweep.axes, **axes}
    try:
        sweep = dataclasses.replace(sweep, **{k: v for k, v in overrides.items() if v is not None})
        task = tasks.make(args.task, task_config)
        command = "python -m experiments.run " + shlex.join(sys.argv[1:] if argv is None else argv)
        run_sweep(
            task,
            sweep,
            args.out,
            args.data_dir,
            progress=not args.no_progress,
            command=command,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as e:  # bad input, missing data: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
