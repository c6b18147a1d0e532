"""This checkout's training step against another checkout's, timed in turn in one process.

    git worktree add /tmp/baseline <commit>
    python -m benchmarks.compare_checkouts --baseline /tmp/baseline [--tasks sbn,cae,dlgn]
        [--configs 1] [--repeats 8] [--quick]

On a shared machine the speed drifts by tens of percent from one minute to the next, so two
benchmark runs one after the other cannot show a 10-20% change. This script imports the
baseline's `dst_jax` as a second package (its source copied to a temporary folder with its
imports renamed to `dst_jax_baseline`), builds both versions' segment (dst_jax/sweep/train.py)
for the same synthetic data (`benchmarks.common.make_setup`), jitted alone ("plain") and under
`vmap` over `--configs` configs, and times all four in turn (`benchmarks/segments.py`). The two
checkouts must share the task Config fields and the data layout.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import tempfile
from pathlib import Path

import jax

from benchmarks import segments
from benchmarks.common import ESTIMATOR, make_setup
from dst_jax import estimators
from dst_jax.argtypes import positive_int
from dst_jax.sweep.train import make_fns

BASELINE = "dst_jax_baseline"


def import_baseline(checkout: Path):
    """The baseline checkout's `dst_jax`, imported as `dst_jax_baseline`."""
    src = checkout / "dst_jax"
    if not (src / "__init__.py").is_file():
        raise SystemExit(f"--baseline {checkout}: no dst_jax/__init__.py there")
    dest = Path(tempfile.mkdtemp(prefix="dst_jax_baseline_")) / BASELINE
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path in dest.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bdst_jax(?=[.\s]|$)", BASELINE, text, flags=re.M))
    sys.path.insert(0, str(dest.parent))
    return importlib.import_module(BASELINE)


def _baseline_estimator(baseline_pkg):
    """What the baseline's `make_fns` takes: a registry entry, or (older versions) a name."""
    registry = getattr(baseline_pkg.estimators, "REGISTRY", None)
    return registry[ESTIMATOR] if registry is not None else ESTIMATOR


def compare(
    baseline_pkg, name: str, n_configs: int, repeats: int, quick: bool = False
) -> list[dict]:
    setup = make_setup(name, quick=quick)
    data = jax.device_put(setup.data)
    base_fns = importlib.import_module(f"{BASELINE}.sweep.train").make_fns
    base_task = baseline_pkg.tasks.make(name, setup.task.config)
    programs = {}
    versions = (
        ("baseline", base_fns, base_task, _baseline_estimator(baseline_pkg)),
        ("this", make_fns, setup.task, estimators.REGISTRY[ESTIMATOR]),
    )
    for version, make, task, est in versions:
        for variant, program in segments.plain_and_vmapped(
            make, task, est, setup, data, n_configs
        ).items():
            programs[version, variant] = program
    ms = segments.ms_per_model_step(programs, data, segments.STEPS[name], repeats)
    variants = list(dict.fromkeys(v for _, v in programs))
    return [
        {
            "task": name,
            "variant": v,
            "baseline_ms": ms["baseline", v],
            "this_ms": ms["this", v],
            "ratio": ms["this", v] / ms["baseline", v] if ms["baseline", v] > 0 else float("nan"),
        }
        for v in variants
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_checkouts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--baseline", required=True, type=Path, help="the other checkout's root")
    segments.add_task_flag(p)
    p.add_argument("--configs", type=positive_int("--configs"), default=1)
    p.add_argument("--repeats", type=positive_int("--repeats"), default=8)
    args = p.parse_args(argv)
    tasks = segments.checked_tasks(p, args)
    baseline = import_baseline(args.baseline.resolve())
    print(f"{'task':<6} {'variant':<10} {'baseline ms':>12} {'this ms':>10} {'this/baseline':>14}")
    print("(ms per model-step)")
    for name in tasks:
        for r in compare(baseline, name, args.configs, args.repeats, args.quick):
            print(
                f"{r['task']:<6} {r['variant']:<10} {r['baseline_ms']:>12.3f} "
                f"{r['this_ms']:>10.3f} {r['ratio']:>13.2f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
