"""Markdown summaries of a sweep: the best config per estimator with intervals, the paired
comparisons, and where each optimum lies. Used for `summary.md` and `experiments.report`.

Every "best" here is the rule of `dst_jax.sweep.results`: the config with the best mean over
seeds of the selection metric (`select`, a validation metric unless the sweep selects on
test); the numbers reported are `report` metrics of that config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dst_jax import estimators as estimator_lib
from dst_jax.sweep import grid, halving, results, stats
from dst_jax.sweep.stats import Paired


def _fmt(x: float, digits: int = 4) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def mean_std_ci(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    """ "mean ± std [lo, hi]" (std ddof = 1, 95% Student-t interval of the mean over seeds)."""
    m, s, ci = row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_ci"]
    if not math.isfinite(s):
        return f"{_fmt(m, digits)} (1 seed)"
    return f"{_fmt(m, digits)} ± {_fmt(s, digits)} [{_fmt(m - ci, digits)}, {_fmt(m + ci, digits)}]"


def _varied(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Hyperparameters beyond (tau_f, tau_b, lr) that any row sets to a non-default value."""
    return [
        f.name for f in grid.HPARAMS if any(r.get(f.name, f.default) != f.default for r in rows)
    ]


def best_table(
    best: dict[str, dict[str, Any]], metrics: Sequence[str], estimators: Sequence[str]
) -> str:
    """The best config per estimator: temperatures, learning rate, every other hyperparameter
    that some best config sets to a non-default value, seeds and each metric's mean ± std
    [95% CI]."""
    extra = _varied(list(best.values()))
    head = ["estimator", "tau_f", "tau_b", "lr", *extra, "seeds", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for est in estimators:
        row = best.get(est)
        if row is None:
            lines.append(f"| {est} | " + " | ".join(["-"] * (len(head) - 1)) + " |")
            continue
        cells = [
            est,
            f"{row['tau_f']:g}",
            f"{row['tau_b']:g}",
            f"{row['lr']:g}",
            *(
                "-"
                if row.get(name) is None
                else f"{row[name]:g}"
                if isinstance(row[name], float)
                else str(row[name])
                for name in extra
            ),
            f"{row['n_seeds'] - row['n_diverged']}/{row['n_seeds']}",
            *(mean_std_ci(row, m) for m in metrics),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _entry(name: str) -> estimator_lib.Estimator | None:
    # Results may name an estimator this installation no longer registers.
    return estimator_lib.REGISTRY[name] if name in estimator_lib.REGISTRY else None


def _config(row: dict[str, Any]) -> str:
    entry = _entry(row["estimator"])
    if entry is not None and entry.n_temperatures == 1:
        return f"{row['estimator']} (tau = {row[entry.writes_tau_to[0]]:g})"
    if entry is not None and entry.n_temperatures == 0:
        return row["estimator"]
    return f"{row['estimator']} ({row['tau_f']:g}, {row['tau_b']:g})"


ONE_SEED = "one seed: no inference"


def _paired_line(label_a: str, label_b: str, p: Paired, p_holm: float, digits: int = 4) -> str:
    d = p.diff
    if p.n == 0:
        return f"| {label_a} | {label_b} | - | - | - | 0 |"
    if p.n == 1:
        return f"| {label_a} | {label_b} | {_fmt(d.mean, digits)} | {ONE_SEED} | - | - |"
    interval = (
        f"[{_fmt(d.mean - d.ci, digits)}, {_fmt(d.mean + d.ci, digits)}]"
        if math.isfinite(d.ci)
        else "-"
    )
    p_text = "-" if not math.isfinite(p_holm) else f"{p_holm:.3g}"
    return (
        f"| {label_a} | {label_b} | {_fmt(d.mean, digits)} | {interval} | {p_text} | "
        f"{p.wins}/{p.n} |"
    )


def paired_table(
    runs: list[dict[str, Any]],
    best: dict[str, dict[str, Any]],
    select: str,
    report: str,
    direction: str,
    reference: str = estimator_lib.REFERENCE,
) -> str:
    """Paired comparisons on `report`, seed by seed (A - B; "A wins" counts seeds where A is
    better in the metric's direction):
    - the best config of `reference` against the best config of every other estimator;
    - for each two-temperature estimator, its best cell against its best diagonal cell
      (tau_f = tau_b), the comparison behind the claim that decoupling helps.

    p (Holm): the paired t-test's two-sided p-value, Holm-adjusted over the table's
    comparisons. With one seed a difference is a single observation: its row says so instead
    of an interval.
    """
    head = (
        f"| A | B | mean A - B ({report}) | 95% interval | p (Holm) | A wins |\n"
        "|---|---|---|---|---|---|"
    )
    rows: list[tuple[str, str, Paired, float] | str] = []

    def add(a, b, label_a, label_b):
        p = results.compare(runs, a, b, report, direction)
        pv = stats.paired_t_p(
            results.seed_values(runs, a, report), results.seed_values(runs, b, report)
        )
        rows.append((label_a, label_b, p, pv))

    ref = best.get(reference)
    if ref is not None:
        for est, row in best.items():
            if est != reference:
                add(ref, row, _config(ref), _config(row))
    for est, row in best.items():
        entry = _entry(est)
        if entry is None or entry.n_temperatures != 2:
            continue
        diag = results.best_diagonal(runs, est, select, direction)
        if diag is not None and (diag["tau_f"], diag["tau_b"]) != (row["tau_f"], row["tau_b"]):
            add(row, diag, _config(row), _config(diag) + " diagonal")
        elif diag is not None:
            rows.append(f"| {_config(row)} | (the best cell is on the diagonal) | 0 | - | - | - |")
    adjusted = iter(stats.holm([r[3] for r in rows if not isinstance(r, str)]))
    lines = [head]
    for r in rows:
        lines.append(r if isinstance(r, str) else _paired_line(r[0], r[1], r[2], next(adjusted)))
    return "\n".join(lines)


def paired_note(runs: list[dict[str, Any]]) -> str:
    """What the paired table's inference rests on: the number of seeds (none with one)."""
    seeds = len({r["seed"] for r in runs})
    if seeds < 2:
        return f" {ONE_SEED} (each difference is a single observation)."
    return " p (Holm): paired t-test over seeds, Holm-adjusted over the table's comparisons."


def optimum_lines(runs: list[dict[str, Any]], best: dict[str, dict[str, Any]]) -> list[str]:
    """One line per tempered estimator: its best temperatures and whether each is interior."""
    lines = []
    for est, row in best.items():
        entry = _entry(est)
        if entry is None or not entry.axes:
            continue
        pos = results.optimum_position(runs, row, entry.axes)
        where = ", ".join(f"{axis} = {row[axis]:g} ({p})" for axis, p in pos.items())
        interior = all(p == "interior" for p in pos.values())
        lines.append(f"- {est}: {where}; {'interior' if interior else 'ON THE EDGE of the grid'}")
    return lines


def histogram_table(
    runs: list[dict[str, Any]],
    best: dict[str, dict[str, Any]],
    name: str,
    bins: Sequence[str],
) -> str:
    """The histogram `name` (a final array of `len(bins)` fractions, e.g. the gate usage) of
    each estimator's best config, in percent, averaged over its seeds that did not diverge."""
    head = ["estimator", "config", *bins]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for est, row in best.items():
        hists = [r["final"][name] for r in results.runs_of(runs, row, finished=True)]
        hists = [h for h in hists if h is not None and len(h) == len(bins)]
        if not hists:
            continue
        mean = [100.0 * sum(col) / len(hists) for col in zip(*hists, strict=True)]
        lines.append(f"| {est} | {_config(row)} | " + " | ".join(f"{v:.1f}" for v in mean) + " |")
    return "\n".join(lines)


def sweep_summary(
    runs: list[dict[str, Any]],
    select: str,
    report: str,
    direction: str,
    metrics: Sequence[str],
    estimators: Sequence[str],
    histograms: Mapping[str, Sequence[str]] | None = None,
    rungs: Sequence[int] | None = None,
) -> str:
    """The whole summary.md: best configs, paired comparisons, optimum positions, for each of
    the task's `histograms` (results key -> bin names) that histogram of every best config, and
    with successive halving (`rungs`: the steps its rungs end at) the cells alive per rung."""
    best = results.best_per_estimator(runs, select, direction, metrics)
    rounds = max((r.get("round", 0) for r in runs), default=0)
    refined = sum(r.get("round", 0) > 0 for r in runs)
    parts = [
        f"Best config per estimator, selected by mean `{select}` over seeds; "
        "mean ± std (ddof = 1) [95% Student-t interval] over seeds:",
        "",
        best_table(best, metrics, estimators),
        "",
        f"Paired comparisons on `{report}` (same seeds, same initialisation and minibatch order);"
        + paired_note(runs),
        "",
        paired_table(runs, best, select, report, direction),
        "",
        "Where each optimum lies on its temperature grid"
        + (
            f" (after {rounds} refinement round(s), {refined} runs beyond the first grid):"
            if rounds
            else ":"
        ),
        "",
        *optimum_lines(runs, best),
    ]
    for name, bins in (histograms or {}).items():
        if any(name in r["final"] for r in runs):
            parts += [
                "",
                f"`{name}` of the best config per estimator, percent (mean over seeds):",
                "",
                histogram_table(runs, best, name, bins),
            ]
    if rungs:
        parts += [
            "",
            "Successive halving: cells (configs, their seeds together) trained through each "
            "rung; the tables above hold only the cells that reached the last rung:",
            "",
            halving.rung_table(runs, rungs),
        ]
    return "\n".join(parts)
