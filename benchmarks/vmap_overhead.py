"""What does `vmap` cost one config? The engine's training step, jitted alone and vmapped over 1.

    python -m benchmarks.vmap_overhead [--tasks sbn,cae,dlgn] [--steps 10] [--repeats 3] [--quick]

The engine trains every config under `jit(vmap(segment))`, also a grid of one. This script times
the same `segment` (dst_jax/sweep/train.py: `steps` training steps in a `lax.scan`, then the
evaluation) compiled two ways, in one process on the default device:
- plain: `jit(segment)` on one config's state;
- vmap(1): `jit(vmap(segment))` on a batch of one config, as the engine runs it.
The time per training step is the difference between segments of 2 x `steps` and `steps` steps,
divided by `steps`, so the evaluation at the end of a segment cancels out; each segment is the
best of `--repeats` calls after a warm-up call, the two variants timed in turn. Synthetic data
of the real shapes (`benchmarks.common.make_setup`); Decoupled ST.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks.common import ESTIMATOR, TASKS, make_runs, make_setup
from dst_jax.sweep import grid
from dst_jax.sweep.train import make_fns
from experiments.cli import names, positive_int


def _seconds(fn, state, hp, data, n_steps: int) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(state, hp, data, jnp.int32(0), n_steps))
    return time.perf_counter() - t0


def measure(task_name: str, steps: int, repeats: int, quick: bool) -> dict[str, float | str]:
    setup = make_setup(task_name, quick=quick)
    data = jax.device_put(setup.data)
    init, segment = make_fns(setup.task, ESTIMATOR)
    hp1 = grid.hparams_array(make_runs(setup, 1), 1)  # a batch of one config
    hp0 = {k: v[0] for k, v in hp1.items()}
    variants = {
        "plain": (jax.jit(segment, static_argnums=4), jax.jit(init)(hp0, data), hp0),
        "vmap1": (
            jax.jit(jax.vmap(segment, in_axes=(0, 0, None, None, None)), static_argnums=4),
            jax.jit(jax.vmap(init, in_axes=(0, None)))(hp1, data),
            hp1,
        ),
    }
    # Segments donate nothing here, so the same state can be timed again and again. The four
    # programs are compiled and warmed up first, then timed in turn, `repeats` rounds, keeping
    # each one's best: interleaving keeps a change in machine load from favouring one variant.
    best = {}
    for name, (fn, state, hp) in variants.items():
        for n in (steps, 2 * steps):
            _seconds(fn, state, hp, data, n)
            best[name, n] = float("inf")
    for _ in range(repeats):
        for name, (fn, state, hp) in variants.items():
            for n in (steps, 2 * steps):
                best[name, n] = min(best[name, n], _seconds(fn, state, hp, data, n))
    ms = {
        name: max(best[name, 2 * steps] - best[name, steps], 0.0) / steps * 1e3 for name in variants
    }
    return {
        "task": task_name,
        "plain_ms": ms["plain"],
        "vmap1_ms": ms["vmap1"],
        "ratio": ms["vmap1"] / ms["plain"] if ms["plain"] > 0 else float("nan"),
    }


def table(rows: list[dict]) -> str:
    lines = [
        f"{'task':<6} {'plain ms/step':>14} {'vmap(1) ms/step':>16} {'vmap / plain':>13}",
    ]
    for r in rows:
        lines.append(
            f"{r['task']:<6} {r['plain_ms']:>14.3f} {r['vmap1_ms']:>16.3f} {r['ratio']:>12.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.vmap_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tasks", type=names, default=TASKS, help="comma list of tasks")
    p.add_argument("--steps", type=positive_int("--steps"), default=10)
    p.add_argument("--repeats", type=positive_int("--repeats"), default=3)
    p.add_argument("--quick", action="store_true", help="small shapes (CPU smoke run)")
    args = p.parse_args(argv)
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}, {args.steps} steps")
    rows = []
    for name in args.tasks:
        rows.append(measure(name, args.steps, args.repeats, args.quick))
        print(table(rows).splitlines()[-1] if len(rows) > 1 else table(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
