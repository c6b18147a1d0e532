"""Successive halving inside the compiled grid: train every cell a little, continue the best.

A sweep with `SweepConfig.halving` = ETA trains in rungs. The last rung is the sweep's length
`steps`; the earlier ones lie at `steps / ETA^k`, rounded to the nearest multiple of the
evaluation interval (`rung_steps`), so every rung ends on an evaluation the uninterrupted run
also makes. Every cell (one config of every grid axis, `results.CONFIG_KEYS`, its seeds
together) trains to the first rung. Then, per estimator, the cells are ranked by the selection
metric at the rung with the rule of `results` (mean over seeds, in the metric's direction; NaN
last) and the best ceil(n / ETA) continue (`survivors`): at least one per estimator, and for a
two-temperature estimator also its best diagonal cell (tau_f == tau_b), so that the paired
diagonal comparison stays possible. Survivors continue from their saved state; every schedule
(learning rate, temperatures) runs over the whole `steps`, so a survivor's curve, final metrics
and parameters are those of the same config trained without halving.

A run stopped at a rung keeps what it has: its curve up to the rung and, in `final`, its metrics
at that step (the test split, evaluated only at the last step with `test_at="end"`, is null).
Its record says `stopped: true`; `results.config_table`, and so every "best", table, heatmap and
comparison, considers only runs that reached the last rung. Each refinement round (`refine`)
halves its own new cells the same way.

`replay` applies the same rule to the curves of a finished sweep trained without halving: which
cell would halving have selected, at what cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from dst_jax import estimators as estimator_lib
from dst_jax.sweep import engine, grid, results
from dst_jax.tasks.base import Task


# -- the rule ----------------------------------------------------------------------------------
def rung_steps(steps: int, eval_every: int, eta: int, n_rungs: int | None = None) -> list[int]:
    """The steps at which rungs end: `steps / eta^k` for k = n_rungs - 1, ..., 1, each rounded
    to the nearest multiple of `eval_every`, then `steps` itself. `n_rungs=None`: as many rungs
    as keep every rounded rung at least one evaluation interval long and after the one before
    (2,000 steps evaluated every 500 with ETA 3: [500, 2000]; 54,000 every 3,000:
    [3000, 6000, 18000, 54000]).

    Raises:
      ValueError: if fewer than two rungs fit, or the `n_rungs` asked for do not.
    """
    if eta < 2:
        raise ValueError(f"halving needs ETA >= 2, got {eta}")

    def rounded(n: int) -> list[int]:
        early = (steps / eta ** (n - 1 - k) for k in range(n - 1))
        return [math.floor(s / eval_every + 0.5) * eval_every for s in early] + [steps]

    def fits(rungs: list[int]) -> bool:
        return rungs[0] >= 1 and all(a < b for a, b in zip(rungs, rungs[1:], strict=False))

    if n_rungs is None:
        if not fits(rounded(2)):
            raise ValueError(
                f"halving by {eta} needs a first rung of at least one evaluation interval, but "
                f"{steps} steps / {eta} rounds to 0 evaluations of every {eval_every} steps; "
                "evaluate more often (--eval-every) or train longer"
            )
        n_rungs = 2
        while fits(rounded(n_rungs + 1)):
            n_rungs += 1
    rungs = rounded(n_rungs)
    if not fits(rungs):
        raise ValueError(
            f"{n_rungs} rungs of ETA {eta} do not fit {steps} steps evaluated every {eval_every} "
            f"steps (rounded to evaluations they would end at {rungs}); ask for fewer --rungs or "
            "evaluate more often"
        )
    return rungs


def _rank_key(score: float, direction: str) -> tuple:
    if not math.isfinite(score):
        return (1, 0.0)
    return (0, -score if direction == "max" else score)


def survivors(records: list[dict[str, Any]], select: str, direction: str, eta: int) -> set[tuple]:
    """Config keys (`results.config_key`) of the cells that continue past a rung, given each
    alive run's record at the rung: per estimator, the best ceil(n / eta) of its n cells by
    mean `select` over seeds (ties: grid order), and a two-temperature estimator's best diagonal
    cell."""
    rows_of: dict[str, list[dict[str, Any]]] = {}
    for row in results.config_table(records, (select,)):
        rows_of.setdefault(row["estimator"], []).append(row)
    keep: set[tuple] = set()
    for est, rows in rows_of.items():
        ranked = sorted(rows, key=lambda r: _rank_key(r[f"{select}_mean"], direction))
        keep.update(results.config_key(r) for r in ranked[: max(1, math.ceil(len(rows) / eta))])
        entry = estimator_lib.REGISTRY[est] if est in estimator_lib.REGISTRY else None
        if entry is not None and entry.n_temperatures == 2:
            diag = results.best_diagonal(records, est, select, direction)
            if diag is not None:
                keep.add(results.config_key(diag))
    return keep


def _merge(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """A run's record after one more rung: curves joined, the rest from the later rung."""
    if before is None:
        return after
    curve = {k: before["curve"][k] + after["curve"][k] for k in after["curve"]}
    return {**after, "curve": curve}


# -- training ----------------------------------------------------------------------------------
def train_halving(
    task: Task,
    data: dict[str, Any],
    runs: Sequence[grid.Run],
    options: engine.EngineOptions | None = None,
    *,
    rungs: Sequence[int],
    eta: int,
    select: str,
    direction: str,
    **fields: Any,
) -> engine.SweepOutput:
    """`engine.train_runs` with successive halving at `rungs` (module docstring); `options`
    (or its fields as keywords) as there.

    Rung r of an estimator trains its alive runs in chunks of their own (the chunk size of the
    first rung, balanced over the alive runs; files tagged `<tag>-rung<r>`) through the
    engine's `Trainer.chunk`. At the end of a rung each chunk's state is saved before its
    records, so a rerun continues inside or between rungs. Each record gets `rung` (the last
    rung it reached), `stopped_step` and `stopped` (true if halving stopped it before the last
    rung); `callback(estimator, chunk, segment)` counts segments over the whole run.
    """
    opts = engine.engine_options(options, fields)
    steps = opts.steps
    if list(rungs) != sorted(set(rungs)) or rungs[-1] != steps or rungs[0] < 1:
        raise ValueError(f"rungs {list(rungs)} must increase and end at the sweep's {steps} steps")
    ends = [e for _, e in engine.Trainer.intervals(steps, opts.eval_every)]
    missing = [r for r in rungs if r not in ends]
    if missing:
        raise ValueError(f"rungs {missing} are not evaluation steps (every {opts.eval_every})")
    trainer = engine.Trainer(task, data, len(runs), opts)
    n_dev = trainer.mesh.devices.size
    # Segments [lo, hi) of each rung.
    cuts = [0] + [ends.index(r) + 1 for r in rungs]
    last = len(rungs) - 1
    records: list[dict] = [{}] * len(runs)  # every slot is filled below
    figures: list[dict] = [{}] * len(runs)
    timing: dict[str, Any] = {}
    for est, idxs in engine.by_estimator(runs).items():
        est_runs = [runs[i] for i in idxs]
        program, size = trainer.program(est, est_runs)
        n_chunks = 0
        alive = list(range(len(est_runs)))  # positions in est_runs
        states: dict[int, Any] = {}  # position -> host state at the end of the last rung
        recs: dict[int, dict] = {}
        for r in range(len(rungs)):
            rsize = size if r == 0 else engine.balanced(len(alive), size, n_dev)
            ranges = grid.chunks(len(alive), rsize)
            n_chunks += len(ranges)
            ended: dict[int, Any] = {}
            for k, (a, b) in enumerate(ranges):
                members = alive[a:b]
                state0 = None
                if r > 0:
                    picked = [states[p] for p in members]
                    picked += [picked[-1]] * (rsize - len(picked))
                    state0 = jax.tree.map(lambda *xs: np.stack(xs), *picked)
                where = engine._Where(f"{opts.tag}-rung{r}", est, k)
                chunk_records, chunk_figures, end_state = trainer.chunk(
                    program, where, [est_runs[p] for p in members], rsize,
                    range(cuts[r], cuts[r + 1]), state0, keep_state=r < last,
                )  # fmt: skip
                for j, p in enumerate(members):
                    recs[p] = _merge(recs.get(p), chunk_records[j])
                    recs[p]["rung"] = r
                    figures[idxs[p]] = {n: v[j] for n, v in chunk_figures.items()}
                    if end_state is not None:
                        ended[p] = jax.tree.map(lambda x, j=j: x[j], end_state)
            if r < last:
                keep = survivors([recs[p] for p in alive], select, direction, eta)
                alive = [p for p in alive if results.config_key(recs[p]) in keep]
                states = {p: ended[p] for p in alive}
        for p, rec in recs.items():
            rec["stopped_step"] = int(rec["curve"]["step"][-1])
            rec["stopped"] = rec["rung"] < last
            records[idxs[p]] = rec
        timing[est] = trainer.timing(est, size, n_chunks)
    trainer.bar.close()
    return engine.SweepOutput(list(records), list(figures), timing)


# -- what it saved -----------------------------------------------------------------------------
def alive_per_rung(runs: list[dict[str, Any]], n_rungs: int) -> dict[str, list[int]]:
    """{estimator: cells that trained through rung k, for each k} of halved runs."""
    cells: dict[str, list[set]] = {}
    for r in runs:
        per = cells.setdefault(r["estimator"], [set() for _ in range(n_rungs)])
        for k in range(r.get("rung", n_rungs - 1) + 1):
            per[k].add(results.config_key(r))
    return {est: [len(s) for s in per] for est, per in cells.items()}


def model_steps(runs: list[dict[str, Any]], steps: int) -> tuple[int, int]:
    """(model-steps trained, model-steps of every run trained to `steps`): one model-step is
    one optimisation step of one run (one seed of one cell)."""
    trained = sum(int(r.get("stopped_step", steps)) for r in runs)
    return trained, len(runs) * steps


def rung_table(runs: list[dict[str, Any]], rungs: Sequence[int]) -> str:
    """Markdown: cells alive per rung per estimator, and the model-steps saved."""
    alive = alive_per_rung(runs, len(rungs))
    head = ["estimator", *(f"rung {k} (step {s:,})" for k, s in enumerate(rungs))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for est, counts in alive.items():
        lines.append(f"| {est} | " + " | ".join(str(c) for c in counts) + " |")
    trained, full = model_steps(runs, rungs[-1])
    lines += [
        "",
        f"Model-steps trained: {trained:,} of {full:,} for every run to step {rungs[-1]:,} "
        f"({100 * trained / full:.1f}%; {100 * (1 - trained / full):.1f}% saved).",
    ]
    return "\n".join(lines)


# -- replay on a finished sweep ----------------------------------------------------------------
def _at_step(run: dict[str, Any], step: int, metrics: Sequence[str]) -> dict[str, Any]:
    """A run's record as it stood after `step`, from its curve (diverged only if it had)."""
    steps = run["curve"]["step"]
    if step not in steps:
        raise ValueError(
            f"step {step} is not an evaluation of the stored curves (they hold {steps}); "
            "choose --rungs or ETA so that every rung is one of them"
        )
    i = steps.index(step)
    d = run.get("diverged_step")
    return {
        **{k: run.get(k) for k in results.CONFIG_KEYS if k in run},
        "seed": run["seed"],
        "diverged": bool(run["diverged"]) and d is not None and d < step,
        "final": {m: run["curve"][m][i] for m in metrics},
    }


def replay(
    runs: list[dict[str, Any]],
    select: str,
    direction: str,
    eta: int,
    rungs: Sequence[int],
) -> list[dict[str, Any]]:
    """The runs of a sweep trained without halving, marked as halving would have left them:
    each round (`round`) halved on its own, from the curves' `select` values at the rungs.
    Returns copies with `rung`, `stopped_step` and `stopped` set (`final` unchanged: pass them
    to `results.best_per_estimator`, which skips stopped runs)."""
    out = [dict(r) for r in runs]
    for rnd in sorted({r.get("round", 0) for r in runs}):
        alive = [i for i, r in enumerate(runs) if r.get("round", 0) == rnd]
        for i in alive:
            out[i]["rung"] = 0
        for k, step in enumerate(rungs[:-1]):
            keep = survivors(
                [_at_step(runs[i], step, (select,)) for i in alive], select, direction, eta
            )
            alive = [i for i in alive if results.config_key(runs[i]) in keep]
            for i in alive:
                out[i]["rung"] = k + 1
    for r in out:
        r["stopped_step"] = rungs[r["rung"]]
        r["stopped"] = r["rung"] < len(rungs) - 1
    return out


def rank_agreement(
    runs: list[dict[str, Any]], estimator: str, select: str, direction: str, early: int, late: int
) -> dict[str, Any]:
    """How well the cells' order at step `early` predicts their order at step `late`, for one
    estimator: Spearman's rank correlation of the cells' mean `select` over seeds at the two
    steps, and where the cell that is best at `late` ranked at `early`."""
    from scipy import stats as scipy_stats

    own = [r for r in runs if r["estimator"] == estimator]
    table = {
        step: {
            results.config_key(row): row[f"{select}_mean"]
            for row in results.config_table([_at_step(r, step, (select,)) for r in own], (select,))
        }
        for step in (early, late)
    }
    keys = [
        k
        for k in table[early]
        if math.isfinite(table[early][k]) and math.isfinite(table[late].get(k, math.nan))
    ]
    a = np.array([table[early][k] for k in keys])
    b = np.array([table[late][k] for k in keys])
    rho = float(scipy_stats.spearmanr(a, b).statistic) if len(keys) > 2 else math.nan
    order = sorted(keys, key=lambda k: _rank_key(table[early][k], direction))
    best = min(keys, key=lambda k: _rank_key(table[late][k], direction))
    return {"n_cells": len(keys), "spearman": rho, "best_rank_early": order.index(best) + 1}
