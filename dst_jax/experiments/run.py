"""Command line: run a task's sweep and write its results.

    python -m experiments.run {sbn,cae,dlgn} --out DIR [--smoke] [flags]
    python -m experiments.run MODULE:FACTORY --out DIR [--smoke] [flags]

A built-in task's protocol comes from `experiments/configs/<task>.py` (`get_config(smoke)`).
`MODULE:FACTORY` runs a task of your own: MODULE is a dotted module name or a path to a .py
file, FACTORY a callable in it returning the task (any object with the Task protocol of
`dst_jax.tasks.base`), or (task, SweepConfig); it is called with `smoke=True` under --smoke if
it takes that argument, and otherwise --smoke trains a small grid for 100 steps.

Every field of the sweep config (`dst_jax.sweep.config.SweepConfig`) and of the task's config
is a flag (`--help` after the task lists them with their types and defaults); `--set KEY=VALUE`
sets the same fields by name. Rerunning the same command after an interruption resumes the
sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from dst_jax import compilation_cache, tasks
from dst_jax.argtypes import floats, int_at_least, names, positive_float, positive_int
from dst_jax.experiments import flags
from dst_jax.experiments.errors import report_error
from dst_jax.experiments.flags import Flag
from dst_jax.experiments.task_source import TaskSource, task_source
from dst_jax.runner import run_sweep
from dst_jax.sweep import grid
from dst_jax.sweep.config import PRNG_IMPLS, TEST_AT, SweepConfig

# How the sweep fields' flags differ from the generated ones (spelling, help, stricter reader).
SWEEP_FLAGS = {
    "estimators": Flag(
        help="comma list, e.g. decoupled_st,softmax_ste (default: every estimator the task takes)",
        metavar="NAME[,NAME...]",
        read=names,
    ),
    "tau_f": Flag(help="forward temperatures", metavar="TAU[,TAU...]", read=floats("--tau-f")),
    "tau_b": Flag(help="backward temperatures", metavar="TAU[,TAU...]", read=floats("--tau-b")),
    "seeds": Flag(help="number of seeds", metavar="N", read=positive_int("--seeds")),
    "lrs": Flag(("--lr", "--lrs"), "learning rates", "LR[,LR...]", read=floats("--lr")),
    "epochs": Flag(
        help="training epochs per run", metavar="EPOCHS", read=positive_float("--epochs")
    ),
    "max_steps": Flag(
        help="cap on training steps", metavar="STEPS", read=positive_int("--max-steps")
    ),
    "eval_every": Flag(
        help="steps between evaluations (validation; test too with --test-at every)",
        metavar="STEPS",
        read=positive_int("--eval-every"),
    ),
    "chunk_size": Flag(
        help="configs per compiled chunk (none: estimated from device memory)",
        metavar="N",
        read=positive_int("--chunk-size"),
    ),
    "checkpoint_every_s": Flag(
        help="save mid-chunk state at most this often",
        metavar="SECONDS",
        read=positive_float("--checkpoint-every-s"),
    ),
    "select_on": Flag(
        help="split whose headline metric picks the best config", choices=("val", "test")
    ),
    "test_at": Flag(
        help="evaluate the test split only after the last step, or at every evaluation",
        choices=TEST_AT,
    ),
    "refine": Flag(
        help="up to N rounds extending a temperature axis whose optimum is on its edge",
        metavar="N",
        read=int_at_least("--refine", 0),
    ),
    "halving": Flag(
        help="successive halving: at each rung only the best 1/ETA of each estimator's cells "
        "continue (rungs at steps / ETA^k, rounded to evaluation steps; 0: off)",
        metavar="ETA",
        read=int_at_least("--halving", 2),
    ),
    "rungs": Flag(
        help="number of halving rungs (none: as many as keep the first rung at least one "
        "evaluation interval long)",
        metavar="N",
        read=int_at_least("--rungs", 2),
    ),
    "prng": Flag(help="JAX PRNG implementation of every random stream", choices=PRNG_IMPLS),
    "optimizer": Flag(
        help="an optax optimizer's name (adam, adamw, sgd, radam, lion, ...) or 'task' (the "
        "task's make_optimizer(learning_rate)); the learning rate is --lr",
        metavar="NAME",
    ),
    "momentum": Flag(help="the optimizer's momentum (e.g. sgd's; none: optax's default)"),
    "weight_decay": Flag(
        help="the optimizer's weight_decay (adamw, lion, ...), else added to the gradient as an "
        "L2 penalty (none: optax's default)"
    ),
    "clip_norm": Flag(help="clip the gradient's global norm to this before the optimizer"),
}


def _task_token(argv: list[str]) -> str | None:
    """The task named in `argv` (its first word that is a task name or MODULE:FACTORY)."""
    return next(
        (a for a in argv if not a.startswith("-") and (a in tasks.TASK_NAMES or ":" in a)), None
    )


def parser(source: TaskSource | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with `source`, the flags of its task's config too."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_epilog(),
    )
    p.add_argument(
        "task", metavar="TASK", help="sbn, cae, dlgn, or MODULE:FACTORY (a task of yours)"
    )
    p.add_argument("--out", required=True, help="output folder (results, plots, checkpoint)")
    p.add_argument(
        "--data-dir", default=None, help="data folder (default: $DST_DATA_DIR, else the user cache)"
    )
    p.add_argument("--smoke", action="store_true", help="tiny grid, a few hundred steps")
    sweep_group = p.add_argument_group(
        "sweep (dst_jax.sweep.config.SweepConfig; defaults: the task's protocol)"
    )
    sweep_fields = flags.fields_of(source.sweep if source else SweepConfig(), "sweep")
    taken = {"--out", "--data-dir", "--smoke", "--set", "--tau-grid", "-h", "--help"}
    flags.add_flags(sweep_group, sweep_fields.values(), SWEEP_FLAGS, taken)
    sweep_group.add_argument(
        "--tau-grid",
        action="append",
        metavar="NAME=TAU_F,.../TAU_B,...",
        help="estimator_taus: temperature axes of one estimator instead of --tau-f/--tau-b, e.g. "
        "decoupled_reinmax=0.1,0.5,2/0.3,1,3 (repeatable)",
    )
    hp = p.add_argument_group("axes: hyperparameters of a run (each a grid axis: comma lists)")
    for f in grid.HPARAMS:
        choices = f.metadata["choices"]
        hp.add_argument(
            f.metadata["flag"],
            dest=f"hp_{f.name}",
            type=_axis_values(f),
            help=f"{f.metadata['help']}" + (f"; one of {', '.join(choices)}" if choices else ""),
        )
    if source is not None:
        task_group = p.add_argument_group(f"task {source.name} ({type(source.config).__name__})")
        taken |= {o for a in p._actions for o in a.option_strings}
        flags.add_flags(task_group, flags.fields_of(source.config, "task").values(), {}, taken)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a task or sweep config field by name, e.g. --set beta=0 (repeatable; the "
        "fields of each task are listed below)",
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


def set_fields(task: str) -> list[tuple[str, str, object]]:
    """(name, type, value in the task's full protocol) of every task config field that `--set`
    accepts, from the task's config dataclass."""
    config, _ = importlib.import_module(f"dst_jax.experiments.configs.{task}").get_config(
        smoke=False
    )
    return [
        (f.name, flags.type_name(f.hint), f.default)
        for f in flags.fields_of(config, "task").values()
    ]


def _epilog() -> str:
    lines = [
        "example (a small sweep of two estimators, resumable, then its report):",
        "  python -m experiments.run sbn --out runs/sbn-small --smoke \\",
        "      --estimators decoupled_st,softmax_ste --seeds 2 --set n_eval_samples=8",
        "  python -m experiments.report runs/sbn-small",
        "",
        "task fields (flags after the task's name, or --set KEY=VALUE; type, value in the full "
        "protocol; tuples as 1,2,3):",
    ]
    for task in tasks.TASK_NAMES:
        lines.append(f"  {task}:")
        for name, hint, value in set_fields(task):
            lines.append(f"    {name}: {hint} = {flags.shown(value)}")
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


def _override_task_config(config, assignments: list[str]):
    """`config` with the `--set KEY=VALUE` items of its fields."""
    read = flags.assignments(assignments, flags.fields_of(config, "task"))
    changes = {key: v for (_, key), v in read.items()}
    return flags.apply(config, changes, "--set " + " ".join(assignments))


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
        return report_error(e)


def resolve(argv: list[str]) -> tuple[argparse.Namespace, Any, SweepConfig]:
    """(flags, task, sweep config) of a command line, without running anything: the task's
    protocol with every flag, `--set`, `--tau-grid` and axis flag applied.

    Raises:
      SystemExit: one line (or argparse's usage error) for input that cannot be used.
    """
    token = _task_token(argv)
    source = None if token is None else task_source(token, "--smoke" in argv)
    args = parser(source).parse_args(argv)
    if source is None:  # a word that is no task: the same one-line error as a wrong name
        source = task_source(args.task, args.smoke)
    sweep_changes = flags.given(args, "sweep")
    if sweep_changes.get("estimators", None) == ():
        raise SystemExit("error: --estimators is empty; name at least one, e.g. decoupled_st")
    task_changes = flags.given(args, "task")
    task_fields = flags.fields_of(source.config, "task")
    sweep_fields = flags.fields_of(source.sweep, "sweep")
    for (scope, key), value in flags.assignments(args.set, task_fields, sweep_fields).items():
        (task_changes if scope == "task" else sweep_changes)[key] = value
    task_config = flags.apply(source.config, task_changes, "--set " + " ".join(args.set))
    if args.tau_grid:
        sweep_changes["estimator_taus"] = dict(_tau_grid(text) for text in args.tau_grid)
    axes = {f.name: getattr(args, f"hp_{f.name}") for f in grid.HPARAMS}
    axes = {k: v for k, v in axes.items() if v is not None}
    if axes:
        sweep_changes["axes"] = {**source.sweep.axes, **axes}
    try:
        sweep = dataclasses.replace(source.sweep, **sweep_changes)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return args, source.build(task_config), sweep


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, task, sweep = resolve(argv)
    # `--out=~/x` reaches us unexpanded (the shell expands only a leading `~` of a word).
    args.out = os.path.expanduser(args.out)
    check_out_dir(args.out)
    if not args.no_compilation_cache:
        compilation_cache.enable()
    init_distributed(args)
    try:
        run_sweep(
            task,
            sweep,
            args.out,
            args.data_dir,
            progress=not args.no_progress,
            command="python -m experiments.run " + shlex.join(argv),
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as e:  # bad input, missing data: one line, not a traceback
        return report_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
