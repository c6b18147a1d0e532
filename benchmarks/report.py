"""Render benchmark JSON files (from `python -m benchmarks.run --json`) as markdown tables.

    python -m benchmarks.report runs/gpu_bench/sbn.json runs/gpu_bench/cae.json ...

Prints, for each file, the command that produced it and its tables, ready for
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import json
import sys

from benchmarks.run import format_table


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m benchmarks.report RESULTS.json [...]", file=sys.stderr)
        return 2
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        print(f"`{result['command']}` ({result['date']})\n")
        print(format_table(result, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
