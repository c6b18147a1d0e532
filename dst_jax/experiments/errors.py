"""How the command lines report bad input: one line on stderr and exit status 2, as argparse does.

Checks deep inside a command raise `SystemExit("what was wrong; how to fix it")` (or a
ValueError/OSError for bad data); each command's `main` hands the exception to `report_error`
instead of letting Python print a traceback.
"""

from __future__ import annotations

import sys

USAGE_ERROR = 2  # argparse's exit status for a usage error


def report_error(e: BaseException) -> int:
    """Prints `error: <message>` on stderr and returns the exit status 2.

    An exit that carries no message (argparse's own usage exits, `sys.exit(0)`) is raised again
    unchanged: argparse has printed its line already, and a status is not an error message.
    """
    if isinstance(e, SystemExit):
        if not isinstance(e.code, str):
            raise e
        message = e.code
    else:
        message = str(e)
    print(f"error: {message.removeprefix('error: ')}", file=sys.stderr)
    return USAGE_ERROR
