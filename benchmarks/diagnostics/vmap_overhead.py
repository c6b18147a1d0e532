"""What does `vmap` cost one config? The engine's training step, jitted alone and vmapped over 1.

    python -m benchmarks.diagnostics.vmap_overhead [--tasks sbn,cae,dlgn] [--repeats 5] [--quick]

The engine trains every config under `jit(vmap(segment))`, also a grid of one. This script times
the same `segment` (dst_jax/sweep/train.py) compiled two ways, in one process on the default
device: "plain", `jit(segment)` on one config's state, and "vmap(1)", `jit(vmap(segment))` on a
batch of one config, as the engine runs it. Timing as in `benchmarks/segments.py` (the segment
difference cancels the evaluation; the two are timed in turn, best of `--repeats`). Synthetic data
of the real shapes (`benchmarks.common.make_setup`); Decoupled ST.
"""

from __future__ import annotations

import argparse

import jax

from benchmarks import segments
from benchmarks.common import ESTIMATOR, make_setup
from dst_jax import estimators
from dst_jax.argtypes import positive_int
from dst_jax.sweep.train import make_fns


def measure(task_name: str, repeats: int, quick: bool) -> dict[str, float | str]:
    setup = make_setup(task_name, quick=quick)
    data = jax.device_put(setup.data)
    programs = segments.plain_and_vmapped(
        make_fns, setup.task, estimators.REGISTRY[ESTIMATOR], setup, data, 1
    )
    ms = segments.ms_per_model_step(programs, data, segments.STEPS[task_name], repeats)
    return {
        "task": task_name,
        "plain_ms": ms["plain"],
        "vmap1_ms": ms["vmap(1)"],
        "ratio": ms["vmap(1)"] / ms["plain"] if ms["plain"] > 0 else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.diagnostics.vmap_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    segments.add_task_flag(p)
    p.add_argument("--repeats", type=positive_int("--repeats"), default=5)
    args = p.parse_args(argv)
    tasks = segments.checked_tasks(p, args)
    print(f"{'task':<6} {'plain ms/step':>14} {'vmap(1) ms/step':>16} {'vmap / plain':>13}")
    for name in tasks:
        r = measure(name, args.repeats, args.quick)
        print(
            f"{r['task']:<6} {r['plain_ms']:>14.3f} {r['vmap1_ms']:>16.3f} {r['ratio']:>12.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
