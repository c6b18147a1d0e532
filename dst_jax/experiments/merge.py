"""Command line: one results folder from sweeps that split a grid's estimators between them.

    python -m experiments.merge PART PART [PART ...] --out DIR

A grid too long for one machine's time is trained in parts (sweeps of some of its estimators
with the same task config, length, evaluation schedule, seeds, selection rule and halving);
this writes the folder the whole grid would have written (results.json, summary.md, the
figures but the code grids, which need trained parameters) so that every best, comparison and
figure spans all the estimators, and `python -m experiments.report DIR` reads it.
Confirmations of one screen merge the same way. timing.json sums the parts' wall times and
keeps each part's command and machine. Parts that differ in the protocol or share an
estimator are refused with the setting that differs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from dst_jax import confirm, provenance
from dst_jax.experiments import report
from dst_jax.experiments.errors import report_error
from dst_jax.experiments.run import check_out_dir
from dst_jax.io import atomic_write_json
from dst_jax.runner import write_outputs
from dst_jax.sweep import merge


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.merge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("parts", metavar="PART", nargs="+", help="finished sweep folders (two or more)")
    p.add_argument("--out", required=True, help="folder for the merged results and figures")
    return p


def merged_timing(parts: list[tuple[str, dict[str, Any]]], command: str) -> dict[str, Any]:
    """timing.json of a merged folder: the parts' wall times summed, each part's own record."""
    walls = [t.get("wall_s") for _, t in parts]
    known = [w for w in walls if isinstance(w, int | float)]
    machine = next((t["machine"] for _, t in parts if "machine" in t), None)
    return {
        "machine": machine,
        "wall_s": round(sum(known), 2) if len(known) == len(walls) else None,
        "command": command,
        "parts": [
            {
                "folder": folder,
                "wall_s": t.get("wall_s"),
                "command": t.get("command"),
                "machine": t.get("machine"),
            }
            for folder, t in parts
        ],
        "merged": provenance.record(),
    }


def _check_out(out: str, parts: list[str]) -> None:
    check_out_dir(out)
    target = Path(out).resolve()
    if any(Path(p).resolve() == target for p in parts):
        raise SystemExit(f"--out {out} is one of the parts; write the merge to a new folder")
    if (target / "results.json").exists() and not _is_merge(target / "timing.json"):
        raise SystemExit(
            f"--out {out} holds another sweep's results; write the merge to a new folder"
        )


def _is_merge(timing: Path) -> bool:
    """Whether a folder's timing.json is a merge's (which a new merge may rewrite)."""
    try:
        return "parts" in json.loads(timing.read_text())
    except (OSError, ValueError, TypeError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if len(args.parts) < 2:
            raise SystemExit("give at least two folders to merge (PART PART ...)")
        _check_out(args.out, args.parts)
        loaded = [(p, *report.load(Path(p))) for p in args.parts]
        merged = merge.merge_results([(p, res) for p, res, _ in loaded])
        task = confirm.task_from_results(merged)
    except (ValueError, SystemExit) as e:
        return report_error(e)
    command = "python -m experiments.merge " + shlex.join(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    written = write_outputs(task, merged, [], args.out)
    timing = merged_timing([(p, t) for p, _, t in loaded], command)
    atomic_write_json(os.path.join(args.out, "timing.json"), provenance.json_safe(timing))
    print(f"wrote {args.out}: results.json, timing.json, " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
