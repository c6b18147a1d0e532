"""The `dst-jax` command (also `python -m dst_jax`): one entry point for the command lines.

    dst-jax run {sbn,cae,dlgn} --out DIR [--smoke] [flags]   train a task's sweep
    dst-jax run MODULE:FACTORY --out DIR [flags]             the same for a task of your own
    dst-jax report DIR [--grid ESTIMATOR]                    the report of a finished sweep
    dst-jax confirm DIR --out DIR2 --seeds K --max-steps N   its selected configs, fresh seeds
    dst-jax merge PART PART --out DIR                        one sweep from parts split by estimator
    dst-jax gradients cae --out DIR [--smoke]                gradients against the exact one

Each command is a module of `dst_jax.experiments` (`run`, `report`, `confirm`, `merge`,
`gradients`); the words after the command's name are its own arguments (`dst-jax run --help`
lists them).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from dst_jax import __version__

COMMANDS = {
    "run": "train a task's sweep (sbn, cae, dlgn or MODULE:FACTORY) and write its results",
    "report": "print the Markdown report of a finished sweep",
    "confirm": "train a finished sweep's selected configs again on fresh seeds",
    "merge": "one results folder from sweeps that split a grid's estimators between them",
    "gradients": "measure every estimator's gradient against the exact one (cae)",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return (
        "usage: dst-jax {" + ",".join(COMMANDS) + "} ... "
        "(dst-jax COMMAND --help for its flags)\n\n"
        "commands:\n" + "\n".join(lines) + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"dst-jax {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} "
            "(dst-jax --help)",
            file=sys.stderr,
        )
        return 2
    command = importlib.import_module(f"dst_jax.experiments.{name}")
    return command.main(rest) or 0
