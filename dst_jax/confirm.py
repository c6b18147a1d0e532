"""Confirmation runs: the configs a finished sweep selected, trained again on fresh seeds.

A sweep selects each estimator's best config on the validation split of its own seeds; the test
numbers of those same seeds then carry a selection bias (the config was picked because its seeds
did well). A confirmation reads the finished sweep (the *screen*), takes each estimator's
selected config and, for every two-temperature estimator, its best diagonal cell
(tau_f = tau_b), and trains exactly those configs again, usually for longer, on seeds the screen
never used. Selection (on the screen) and evaluation (on fresh seeds, on the test split) are
then independent, so the paired differences it reports carry no selection bias.

The confirmation's results.json is an ordinary sweep's plus a "confirmation" record: which
screen selected the configs, by which metric, the role of every config ("selected" or
"diagonal") and the screen's seeds. Its summary reports the configs as the screen chose them;
it never re-selects among them on the confirmation seeds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Sequence
from typing import Any

from dst_jax import estimators as estimator_lib
from dst_jax import summary, tasks
from dst_jax.sweep import merge, results, stats
from dst_jax.sweep.config import SweepConfig
from dst_jax.sweep.grid import Run
from dst_jax.tasks.base import Task, direction

SELECTED, DIAGONAL = "selected", "diagonal"


def load_screen(from_dir: str) -> dict[str, Any]:
    """The results.json of a finished sweep folder, with a one-line error for anything else."""
    path = os.path.join(from_dir, "results.json")
    if not os.path.isdir(from_dir):
        raise ValueError(f"{from_dir} is not a folder; give a finished sweep's results folder")
    if not os.path.exists(path):
        raise ValueError(
            f"{from_dir} holds no results.json; finish the sweep first (rerun its command)"
        )
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path} ({e}); rerun the sweep to rewrite it") from None
    if not isinstance(res, dict) or not res.get("runs") or "config" not in res:
        raise ValueError(f"{path} holds no runs; it is not a finished sweep's results")
    if "confirmation" in res:
        raise ValueError(
            f"{from_dir} is itself a confirmation; confirm the sweep that selected its configs "
            f"({res['confirmation'].get('from')})"
        )
    return res


def merge_screens(screens: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One screen from several finished sweeps that split its estimators between them (each
    part fits a machine's time): their runs together (`dst_jax.sweep.merge`). Refuses parts that
    differ in task, task config, length, seeds or selection rule, or that share an estimator."""
    return merge.merge_results(screens)


def task_from_results(res: dict[str, Any]) -> Task:
    """The task of a results dict, built with the task config the sweep recorded."""
    mod = tasks.module(res["task"])
    recorded = dict(res["config"]["task"])
    hints = typing.get_type_hints(mod.Config)
    for name, value in recorded.items():
        if isinstance(value, list) and _is_tuple_hint(hints.get(name)):
            recorded[name] = tuple(value)
    return tasks.make(res["task"], mod.Config(**recorded))


def _is_tuple_hint(hint) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_tuple_hint(a) for a in typing.get_args(hint))
    return typing.get_origin(hint) is tuple or hint is tuple


def selection_metric(task: Task, res: dict[str, Any]) -> str:
    """The metric the screen selected on: its `select_on` split's headline metric."""
    select_on = res["config"]["sweep"].get("select_on", "val")
    metric = f"{select_on}_{task.headline_metric}"
    if not any(metric in r["final"] for r in res["runs"]):
        raise ValueError(
            f"the screen's runs hold no {metric}; it cannot have selected its configs on it"
        )
    return metric


def selected_configs(
    task: Task,
    res: dict[str, Any],
    estimators: Sequence[str] | None = None,
    diagonals: bool = True,
) -> list[dict[str, Any]]:
    """The configs to confirm, in the screen's estimator order: each estimator's selected config
    and, for a two-temperature estimator whose selected cell lies off the diagonal, its best
    diagonal cell (unless `diagonals` is False: a diagonal cell that another selected config
    already equals in law, such as Decoupled ST's (t, t) beside Softmax STE at t, only costs
    time). Each is a dict of the config keys plus `role`, the screen's `select` score
    (`screen_score`) and the seeds it had."""
    runs = res["runs"]
    select = selection_metric(task, res)
    sel_dir = direction(task, select)
    best = results.best_per_estimator(runs, select, sel_dir)
    order = list(dict.fromkeys(r["estimator"] for r in runs))
    if estimators is not None:
        unknown = [e for e in estimators if e not in order]
        if unknown:
            raise ValueError(
                f"--estimators {','.join(unknown)}: not in the screen (it has {', '.join(order)})"
            )
        order = [e for e in order if e in estimators]
    chosen = []
    for est in order:
        row = best.get(est)
        if row is None:
            continue  # every config of it diverged or has no selection metric
        chosen.append(_chosen(row, SELECTED, select))
        entry = estimator_lib.REGISTRY[est] if est in estimator_lib.REGISTRY else None
        if not diagonals or entry is None or entry.n_temperatures != 2:
            continue
        diag = results.best_diagonal(runs, est, select, sel_dir)
        if diag is not None and results.config_key(diag) != results.config_key(row):
            chosen.append(_chosen(diag, DIAGONAL, select))
    if not chosen:
        raise ValueError("the screen has no config with a finite selection metric to confirm")
    return chosen


def _chosen(row: dict[str, Any], role: str, select: str) -> dict[str, Any]:
    config = {k: row[k] for k in results.CONFIG_KEYS}
    return {
        **config,
        "role": role,
        "screen_score": row[f"{select}_mean"],
        "screen_seeds": row["seeds"],
    }


def fresh_seeds(res: dict[str, Any], n: int, first: int | None = None) -> list[int]:
    """`n` seeds the screen never used: from `first` (default: one past its largest seed)."""
    used = sorted({int(r["seed"]) for r in res["runs"]})
    start = used[-1] + 1 if first is None else first
    seeds = list(range(start, start + n))
    clash = sorted(set(seeds) & set(used))
    if clash:
        raise ValueError(
            f"seeds {clash} selected the configs in the screen; a confirmation needs fresh seeds "
            f"(use --first-seed {used[-1] + 1} or more)"
        )
    return seeds


def confirmation_runs(chosen: Sequence[dict[str, Any]], seeds: Sequence[int]) -> list[Run]:
    """Every chosen config on every seed, grouped by estimator (one compiled program each)."""
    fields = {f.name for f in dataclasses.fields(Run)}
    by_estimator: dict[str, list[Run]] = {}
    for c in chosen:
        hp = {k: v for k, v in c.items() if k in fields and k != "seed"}
        for s in seeds:
            by_estimator.setdefault(c["estimator"], []).append(Run(**hp, seed=int(s)))
    return [r for runs in by_estimator.values() for r in runs]


# Settings of a sweep's record that decide what its runs compute, beside the task, data, task
# config, length and evaluation schedule (their defaults: the SweepConfig's).
_TRAINING_SWEEP = ("prng", "test_at", "optimizer", "momentum", "weight_decay", "clip_norm")


def reusable_records(
    source_dir: str,
    source: dict[str, Any],
    task: Task,
    sweep: SweepConfig,
    runs: Sequence[Run],
) -> dict[tuple, dict[str, Any]]:
    """The records of `source` (a finished sweep or confirmation in `source_dir`) that are runs
    of this confirmation already trained: the same config on the same seed, trained to the end
    under the same protocol (task, data, task config, length, evaluation schedule, PRNG, test
    schedule, optimizer). Keyed by (`results.config_key`, seed); each marked `reused_from`.

    Raises ValueError when the source's protocol differs (reusing its runs would mix two
    experiments), naming the setting."""
    cfg = source["config"]
    batch = task.config.batch_size
    steps = sweep.total_steps(int(cfg["steps_per_epoch"]) * batch, batch)
    defaults = SweepConfig()
    recorded = cfg.get("sweep", {})
    pairs = [
        ("task", task.name, source["task"]),
        (
            "task config",
            tasks.config_as_json(task.config),
            tasks.config_with_defaults(source["task"], cfg["task"]),
        ),
        ("steps", steps, cfg["steps"]),
        ("eval_every", min(sweep.eval_every, steps), cfg["eval_every"]),
    ]
    pairs += [
        (f"sweep.{k}", getattr(sweep, k), recorded.get(k, getattr(defaults, k)))
        for k in _TRAINING_SWEEP
    ]
    for name, mine, theirs in pairs:
        if mine != theirs:
            raise ValueError(
                f"--reuse {source_dir}: its runs were trained with {name} {theirs!r}, this "
                f"confirmation's is {mine!r}; reuse only runs of the same protocol"
            )
    wanted = {(results.config_key(dataclasses.asdict(r)), int(r.seed)) for r in runs}
    # train_* measured another way (the interval's mean, in results written before the rule of
    # `results.TRAIN_METRICS`) are left out rather than mixed with this confirmation's.
    drop_train = results.train_metrics_of(source) != results.TRAIN_METRICS
    found = {}
    for r in source["runs"]:
        key = (results.config_key(r), int(r["seed"]))
        finished = not r.get("stopped") and r.get("curve", {}).get("step", [None])[-1] == steps
        if key in wanted and finished:
            found[key] = {**r, "round": 0, "reused_from": source_dir}
            if drop_train:
                found[key]["final"] = _without_train(r["final"])
                found[key]["curve"] = _without_train(r["curve"])
    return found


def _without_train(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not k.startswith("train_")}


def in_run_order(
    runs: Sequence[Run],
    trained: Sequence[dict[str, Any]],
    reused: dict[tuple, dict[str, Any]],
    figures: Sequence[dict[str, Any] | None] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """Every run's record in the order of `runs` (the newly trained one, or the reused one), and
    the training's figure arrays in the same order (`figures`, parallel to `trained`; None for a
    reused run, which has none; empty if `figures` is)."""
    by_key = {(results.config_key(r), int(r["seed"])): r for r in trained}
    arrays = {key: f for key, f in zip(by_key, figures, strict=False)}
    by_key.update(reused)
    keys = [(results.config_key(dataclasses.asdict(r)), int(r.seed)) for r in runs]
    return [by_key[k] for k in keys], [arrays.get(k) for k in keys] if figures else []


def confirmation_sweep(
    screen: SweepConfig | dict[str, Any],
    chosen: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    *,
    epochs: float | None = None,
    max_steps: int | None = None,
    eval_every: int | None = None,
    chunk_size: int | None = None,
) -> SweepConfig:
    """The SweepConfig recorded for a confirmation: the screen's selection rule, PRNG and test
    schedule, the chosen configs' temperatures and learning rates as its axes, and the new
    length."""
    s = screen if isinstance(screen, dict) else dataclasses.asdict(screen)
    if epochs is None and max_steps is None:
        raise ValueError("give the confirmation's length: --epochs or --max-steps")
    return SweepConfig(
        estimators=tuple(dict.fromkeys(c["estimator"] for c in chosen)),
        tau_f=tuple(sorted({float(c["tau_f"]) for c in chosen})),
        tau_b=tuple(sorted({float(c["tau_b"]) for c in chosen})),
        seeds=len(seeds),
        lrs=tuple(sorted({float(c["lr"]) for c in chosen})),
        epochs=float(epochs) if epochs is not None else 1e9,
        max_steps=max_steps,
        eval_every=eval_every if eval_every is not None else int(s.get("eval_every", 600)),
        chunk_size=chunk_size,
        select_on=s.get("select_on", "val"),
        test_at=s.get("test_at", "end"),
        prng=s.get("prng", "threefry2x32"),
    )


def confirmation_record(
    from_dir: str | Sequence[str],
    task: Task,
    screen: dict[str, Any],
    chosen: Sequence[dict[str, Any]],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """The "confirmation" block of results.json (`run_sweep(..., confirmation=...)`): which
    screen selected the configs, on which metric, step and seeds, the fresh seeds, and each
    config with its role. `from` is the screen's folder, or the list of folders of a screen
    split by estimator."""
    dirs = [from_dir] if isinstance(from_dir, str) else list(from_dir)
    return {
        "from": dirs[0] if len(dirs) == 1 else dirs,
        "select": selection_metric(task, screen),
        "screen_steps": screen["config"]["steps"],
        "screen_seeds": sorted({int(r["seed"]) for r in screen["runs"]}),
        "seeds": list(seeds),
        "configs": list(chosen),
    }


# -- the summary ---------------------------------------------------------------------------------
def fixed_best(
    runs: list[dict[str, Any]], chosen: Sequence[dict[str, Any]], metrics: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each estimator's selected config (as the screen chose it) as a `config_table` row."""
    table = {results.config_key(row): row for row in results.config_table(runs, metrics)}
    out = {}
    for c in chosen:
        if c["role"] == SELECTED:
            row = table.get(results.config_key(c))
            if row is not None:
                out[c["estimator"]] = row
    return out


def confirmation_summary(
    runs: list[dict[str, Any]],
    confirmation: dict[str, Any],
    select: str,
    report: str,
    sel_dir: str,
    metrics: Sequence[str],
    reference: str = estimator_lib.REFERENCE,
) -> str:
    """summary.md of a confirmation: the configs as selected by the screen, their metrics on the
    fresh seeds, and the paired comparisons on those seeds only."""
    chosen = confirmation["configs"]
    metrics = tuple(dict.fromkeys((report, select, *metrics)))
    best = fixed_best(runs, chosen, metrics)
    table = {results.config_key(row): row for row in results.config_table(runs, metrics)}
    estimators = list(dict.fromkeys(c["estimator"] for c in chosen))
    seeds = confirmation["seeds"]
    lines = [
        f"Confirmation of the configs selected by {_screens_label(confirmation['from'])} (by mean "
        f"`{confirmation['select']}` over its seeds {confirmation['screen_seeds']}, at step "
        f"{confirmation['screen_steps']:,}), trained again on the fresh seeds {seeds}. Nothing "
        "is selected here: each estimator's row is the screen's choice, so the intervals and "
        "paired differences below carry no selection bias." + _reused_note(confirmation),
        "",
        "Selected config per estimator on the fresh seeds; mean ± std (ddof = 1) [95% "
        "Student-t interval]:",
        "",
        summary.best_table(best, metrics, estimators),
        "",
        f"Paired comparisons on `{report}`, fresh seeds only (A - B; A wins: seeds where A is "
        "better; p (Holm): paired t-test over seeds, Holm-adjusted over the table's rows):",
        "",
        f"| A | B | mean A - B ({report}) | 95% interval | p (Holm) | A wins |",
        "|---|---|---|---|---|---|",
    ]
    pairs: list[tuple[dict[str, Any], dict[str, Any], str]] = []
    ref = best.get(reference)
    if ref is not None:
        pairs += [(ref, row, "") for est, row in best.items() if est != reference]
    for c in chosen:
        diag = table.get(results.config_key(c)) if c["role"] == DIAGONAL else None
        sel = best.get(c["estimator"])
        if diag is not None and sel is not None:
            pairs.append((sel, diag, " diagonal"))
    p_values = [
        stats.paired_t_p(results.seed_values(runs, a, report), results.seed_values(runs, b, report))
        for a, b, _ in pairs
    ]
    for (a, b, suffix), p_holm in zip(pairs, stats.holm(p_values), strict=True):
        paired = results.compare(runs, a, b, report, sel_dir)
        lines.append(summary._paired_line(_label(a), _label(b) + suffix, paired, p_holm))
    lines += ["", "Screen score against confirmation (the selection metric, mean over seeds):", ""]
    lines += [
        f"| config | role | screen `{confirmation['select']}` | confirmation `{select}` |",
        "|---|---|---|---|",
    ]
    for c in chosen:
        found = table.get(results.config_key(c))
        conf = found[f"{select}_mean"] if found is not None else math.nan
        lines.append(
            f"| {_label(c)} | {c['role']} | {summary._fmt(c['screen_score'])} | "
            f"{summary._fmt(conf)} |"
        )
    return "\n".join(lines)


def _reused_note(confirmation: dict[str, Any]) -> str:
    reused = confirmation.get("reused")
    if not reused:
        return ""
    sources = ", ".join(f"`{d}`" for d in reused["from"])
    dropped = (
        " (without their `train_*` metrics, which were recorded as the mean over the evaluation "
        "interval there)"
        if reused.get("train_metrics_dropped")
        else ""
    )
    return (
        f" {reused['runs']} of the runs (the same config on the same seed, same protocol) were "
        f"trained earlier and are taken from {sources}{dropped}."
    )


def _screens_label(from_dirs: str | Sequence[str]) -> str:
    if isinstance(from_dirs, str):
        return f"`{from_dirs}`"
    return "the screen split by estimator between " + ", ".join(f"`{d}`" for d in from_dirs)


def _label(row: dict[str, Any]) -> str:
    return summary._config(row)
