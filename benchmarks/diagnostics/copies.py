"""Bytes the compiled training loop copies per step, read off XLA's optimised program.

    python -m benchmarks.diagnostics.copies [--tasks sbn,cae,dlgn] [--configs 1] [--quick]

A `copy` instruction outside a fusion is memory traffic that the model does not need: XLA adds
one where a buffer cannot be updated in place (e.g. a loop-carried array still read after its
new value was computed). This script compiles the engine's segment (dst_jax/sweep/train.py,
`jit(vmap(segment))` with the state donated, as the engine runs it) for `steps` and 2 x `steps`
training steps, adds up the bytes of every top-level copy each program executes (loop bodies
times their known trip counts, the larger branch of a conditional), and reports the difference
per training step, so the evaluation at the end of a segment cancels out. It counts, it does not
time: the result depends on the XLA version and backend, not on the machine's load.

Copies of floating-point buffers (parameters, optimiser moments, activations) and of integer
buffers are reported apart: on the CPU, JAX lowers its threefry PRNG to a rolled loop whose
uint32 state XLA copies every round (jax/_src/random/threefry2x32.py; its GPU lowering is
unrolled), so the integer column there is the price of random bits, not of the model.
"""

from __future__ import annotations

import argparse
import re

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import segments
from benchmarks.common import ESTIMATOR, make_setup
from dst_jax import estimators
from dst_jax.argtypes import positive_int
from dst_jax.sweep.train import make_fns

_BYTES = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2}
_BYTES.update({"s16": 2, "u16": 2, "s8": 1, "u8": 1, "pred": 1})
_HEADER = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) ")
_COPY = re.compile(r"= (\w+)\[([\d,]*)\]\{[^}]*\} copy\(")
_WHILE = re.compile(r" while\(.*?body=%?([\w.\-]+)")
_TRIPS = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_CALL = re.compile(r" call\(.*?to_apply=%?([\w.\-]+)")


def _computations(hlo: str) -> tuple[dict[str, list[str]], str]:
    """{name: instruction lines} of an HLO module's text, and the entry computation's name."""
    comps, entry, current = {}, "", None
    for line in hlo.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith("{"):
            m = _HEADER.match(line)
            current = m.group(1) if m else None
            if current is not None:
                comps[current] = []
                if line.startswith("ENTRY"):
                    entry = current
        elif line.startswith("}"):
            current = None
        elif current is not None:
            comps[current].append(line)
    if not entry:
        raise ValueError("no ENTRY computation in the HLO text")
    return comps, entry


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("f", "bf"))


def copied_bytes(hlo: str) -> dict[str, int]:
    """Bytes of top-level copies one execution of the module performs (see module docstring),
    {"float": ..., "int": ...} by the copied buffer's element type."""
    comps, entry = _computations(hlo)
    memo: dict[str, np.ndarray] = {}

    def total(name: str) -> np.ndarray:  # [float bytes, integer bytes]
        if name in memo:
            return memo[name]
        memo[name] = np.zeros(2, np.int64)  # HLO has no recursion: guards malformed text only
        n = np.zeros(2, np.int64)
        for line in comps.get(name, ()):
            if m := _COPY.search(line):
                dtype, dims = m.groups()
                size = _BYTES.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",") if d]))
                n[0 if _is_float(dtype) else 1] += size
            elif m := _WHILE.search(line):
                trips = _TRIPS.search(line)
                if trips is None:
                    raise ValueError(f"a loop without a known trip count: {line.strip()[:120]}")
                n += int(trips.group(1)) * total(m.group(1))
            elif m := _BRANCHES.search(line):
                branches = [total(b.strip().lstrip("%")) for b in m.group(1).split(",")]
                n += max(branches, key=lambda b: int(b.sum()))
            elif m := _CALL.search(line):
                n += total(m.group(1))
        memo[name] = n
        return n

    f, i = total(entry)
    return {"float": int(f), "int": int(i)}


def per_step(task_name: str, n_configs: int, steps: int, quick: bool) -> dict[str, float | str]:
    setup = make_setup(task_name, quick=quick)
    data = jax.device_put(setup.data)
    init, segment = make_fns(
        setup.task, estimators.REGISTRY[ESTIMATOR], total_steps=10**6, test_at="every"
    )
    _, hp = segments.hparams(setup, n_configs)
    state = jax.eval_shape(jax.vmap(init, in_axes=(0, None)), hp, data)
    program = jax.jit(
        jax.vmap(segment, in_axes=(0, 0, None, None, None)), static_argnums=4, donate_argnums=0
    )
    counts = [
        copied_bytes(program.lower(state, hp, data, jnp.int32(0), n).compile().as_text())
        for n in (steps, 2 * steps)
    ]
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    return {
        "task": task_name,
        "configs": n_configs,
        **{f"{k}_mb": (counts[1][k] - counts[0][k]) / steps / 1e6 for k in ("float", "int")},
        "state_mb": state_bytes / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.diagnostics.copies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    segments.add_task_flag(p)
    p.add_argument("--configs", type=positive_int("--configs"), default=1, help="grid size")
    p.add_argument("--steps", type=positive_int("--steps"), default=4)
    args = p.parse_args(argv)
    tasks = segments.checked_tasks(p, args)
    print(f"copies per training step of {args.configs} config(s), MB")
    print("(float: parameters, moments, activations; int: mostly the CPU's PRNG loop)")
    print(f"{'task':<6} {'float':>10} {'int':>10} {'train state':>12}")
    for name in tasks:
        r = per_step(name, args.configs, args.steps, args.quick)
        print(
            f"{r['task']:<6} {r['float_mb']:>10.3f} {r['int_mb']:>10.3f} {r['state_mb']:>12.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
