"""One sweep from several that split its estimators between them.

A grid too long for one machine's time can be trained in parts, each a sweep of some of the
estimators with the same protocol (task config, length, evaluation schedule, seeds, selection
rule, halving). An estimator's runs do not depend on which other estimators share the sweep
(every estimator is its own compiled program, and a run's randomness comes from its config and
seed), so the parts together are the whole grid: their runs concatenated form the results of
the sweep that would have trained every estimator at once, and every best, comparison and
figure is computed on it as usual. Parts that differ in the protocol, or that share an
estimator (its selection would depend on which part was read), are refused.

Confirmations merge the same way when they confirm one screen (the same selection metric,
screen length and seeds, and the same fresh seeds); their records' configs are joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dst_jax.sweep.config import OPTIMIZER_FIELDS, SweepConfig
from dst_jax.sweep.results import train_metrics_of
from dst_jax.tasks import config_with_defaults

# Sweep settings every part must share, beside the task config, length, evaluation schedule and
# seeds; the others (estimators, temperature axes, chunk sizes, checkpoint interval) may differ.
SHARED_SWEEP = (
    "lrs",
    "axes",
    "epochs",
    "max_steps",
    "seeds",
    "select_on",
    "test_at",
    "refine",
    "prng",
)
OPTIMIZER_DEFAULTS = {k: getattr(SweepConfig(), k) for k in OPTIMIZER_FIELDS}
SHARED_CONFIRMATION = ("select", "screen_steps", "screen_seeds", "seeds")


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(setting, value in a, value in b) of every shared protocol setting where two sweeps'
    results differ; empty when they are parts of one sweep."""
    ca, cb = a["config"], b["config"]
    pairs = [
        ("task", a["task"], b["task"]),
        ("dataset", a.get("dataset"), b.get("dataset")),
        (
            "task config",
            config_with_defaults(a["task"], ca.get("task", {})),
            config_with_defaults(b["task"], cb.get("task", {})),
        ),
        ("steps", ca.get("steps"), cb.get("steps")),
        ("steps_per_epoch", ca.get("steps_per_epoch"), cb.get("steps_per_epoch")),
        ("eval_every", ca.get("eval_every"), cb.get("eval_every")),
        ("eval_splits", ca.get("eval_splits"), cb.get("eval_splits")),
        ("halving", ca.get("halving"), cb.get("halving")),
        ("seeds", run_seeds(a), run_seeds(b)),
        ("confirmation", "confirmation" in a, "confirmation" in b),
        ("train_metrics", train_metrics_of(a), train_metrics_of(b)),
    ]
    sa, sb = ca.get("sweep", {}), cb.get("sweep", {})
    pairs += [(f"sweep.{k}", sa.get(k), sb.get(k)) for k in SHARED_SWEEP]
    # The optimizer's settings, at their defaults where a results file predates them.
    pairs += [
        (f"sweep.{k}", sa.get(k, default), sb.get(k, default))
        for k, default in OPTIMIZER_DEFAULTS.items()
    ]
    if "confirmation" in a and "confirmation" in b:
        ra, rb = a["confirmation"], b["confirmation"]
        pairs += [(f"confirmation.{k}", ra.get(k), rb.get(k)) for k in SHARED_CONFIRMATION]
    return [(name, x, y) for name, x, y in pairs if x != y]


def run_seeds(res: dict[str, Any]) -> list[int]:
    """The seeds a sweep's runs used, sorted."""
    return sorted({int(r["seed"]) for r in res["runs"]})


def merge_results(parts: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The results of the sweep that `parts` ((folder, results) pairs) split by estimator.

    Raises ValueError naming the two folders and the setting where they differ, or the
    estimator they share. One part is returned as it is."""
    if not parts:
        raise ValueError("give at least one results folder")
    (first_dir, first), rest = parts[0], parts[1:]
    if not rest:
        return first
    owner = {r["estimator"]: first_dir for r in first["runs"]}
    for part_dir, res in rest:
        for name, mine, theirs in differences(first, res):
            raise ValueError(
                f"{part_dir} and {first_dir} differ in {name} ({theirs!r} vs {mine!r}); only "
                "parts of one sweep, split by estimator, can be merged"
            )
        for est in dict.fromkeys(r["estimator"] for r in res["runs"]):
            if est in owner:
                raise ValueError(
                    f"{est} is in both {owner[est]} and {part_dir}; each estimator must come "
                    "from one part (give parts with disjoint estimators)"
                )
            owner[est] = part_dir
    results = [res for _, res in parts]
    merged = {**first, "config": _merged_config(results)}
    merged["runs"] = [r for res in results for r in res["runs"]]
    if "confirmation" in first:
        merged["confirmation"] = _merged_confirmation([res["confirmation"] for res in results])
    return merged


def _merged_config(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The first part's config with the estimators, axes and chunk sizes of all of them."""
    config = dict(results[0]["config"])
    sweeps = [res["config"]["sweep"] for res in results]
    sweep = dict(sweeps[0])
    sweep["estimators"] = list(
        dict.fromkeys(r["estimator"] for res in results for r in res["runs"])
    )
    for axis in ("tau_f", "tau_b"):
        sweep[axis] = sorted({float(t) for s in sweeps for t in s.get(axis) or ()})
    sweep["estimator_taus"] = {
        k: v for s in sweeps for k, v in (s.get("estimator_taus") or {}).items()
    }
    config["sweep"] = sweep
    chunk_sizes: dict[str, dict[str, Any]] = {}
    for res in results:
        for phase, sizes in (res["config"].get("chunk_sizes") or {}).items():
            chunk_sizes.setdefault(phase, {}).update(sizes)
    config["chunk_sizes"] = chunk_sizes
    return config


def _merged_confirmation(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One confirmation record from several of the same screen: their configs joined, and every
    screen folder they name."""
    screens: list[str] = []
    for rec in records:
        names = rec["from"] if isinstance(rec["from"], list) else [rec["from"]]
        screens += [n for n in names if n not in screens]
    return {
        **records[0],
        "from": screens[0] if len(screens) == 1 else screens,
        "configs": [c for rec in records for c in rec["configs"]],
    }
