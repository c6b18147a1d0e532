"""Markdown summaries of a sweep: the best config per estimator with intervals, the paired
comparisons, and where each optimum lies. Used for `summary.md` and `experiments.report`.

Nothing is selected here: `render(report)` writes a `dst_jax.sweep.report.SweepReport`, which
holds every "best" (the rule of `dst_jax.sweep.results`: the config with the best mean over
seeds of the selection metric `select`, a validation metric unless the sweep selects on test);
the numbers reported are `report` metrics of that config. The functions taking runs build that
report first (kept for their callers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dst_jax import estimators as estimator_lib
from dst_jax.sweep import grid, halving, results
from dst_jax.sweep import report as report_lib
from dst_jax.sweep.report import SweepReport
from dst_jax.sweep.stats import Paired


def _fmt(x: float, digits: int = 4) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def mean_std_ci(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    """ "mean ± std [lo, hi]" (std ddof = 1, 95% Student-t interval of the mean over seeds)."""
    m, s, ci = row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_ci"]
    if not math.isfinite(m):
        return "-"  # no seed of the config recorded it (e.g. a run reused without train_*)
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
        entry = _entry(est)
        # A temperature-free estimator (the relaxation) runs at placeholder temperatures.
        taus = (
            ["-", "-"]
            if entry is not None and entry.n_temperatures == 0
            else [f"{row['tau_f']:g}", f"{row['tau_b']:g}"]
        )
        cells = [
            est,
            *taus,
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


# Results may name an estimator this installation no longer registers.
_entry = report_lib.registry_entry


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
    """Paired comparisons on `report` of the best configs `best` (see `comparisons_table`)."""
    rep = report_lib.compute(runs, select, report, direction, (), best=best, reference=reference)
    return comparisons_table(rep)


def comparisons_table(rep: SweepReport) -> str:
    """The report's paired comparisons on `report`, seed by seed (A - B; "A wins" counts seeds
    where A is better in the metric's direction):
    - the best config of the reference estimator against the best config of every other one;
    - for each two-temperature estimator, its best cell against its best diagonal cell
      (tau_f = tau_b), the comparison behind the claim that decoupling helps.

    p (Holm): the paired t-test's two-sided p-value, Holm-adjusted over the table's
    comparisons. With one seed a difference is a single observation: its row says so instead
    of an interval.
    """
    lines = [
        f"| A | B | mean A - B ({rep.report}) | 95% interval | p (Holm) | A wins |\n"
        "|---|---|---|---|---|---|"
    ]
    for c in rep.comparisons:
        if c.kind == "reference":
            lines.append(_paired_line(_config(c.a), _config(c.b), c.paired, c.p_holm))
    diagonal = {c.a["estimator"]: c for c in rep.comparisons if c.kind == "diagonal"}
    for est, row in rep.best.items():
        if est in diagonal:
            c = diagonal[est]
            label_b = _config(c.b) + " diagonal"
            lines.append(_paired_line(_config(c.a), label_b, c.paired, c.p_holm))
        elif est in rep.diagonal_is_best:
            lines.append(f"| {_config(row)} | (the best cell is on the diagonal) | 0 | - | - | - |")
    return "\n".join(lines)


def paired_note(runs: list[dict[str, Any]]) -> str:
    """What the paired table's inference rests on: the number of seeds (none with one)."""
    seeds = len({r["seed"] for r in runs})
    if seeds < 2:
        return f" {ONE_SEED} (each difference is a single observation)."
    return " p (Holm): paired t-test over seeds, Holm-adjusted over the table's comparisons."


def optimum_lines(runs: list[dict[str, Any]], best: dict[str, dict[str, Any]]) -> list[str]:
    """One line per tempered estimator: its best temperatures and whether each is interior."""
    optima = {}
    for est, row in best.items():
        entry = _entry(est)
        if entry is not None and entry.axes:
            optima[est] = results.optimum_position(runs, row, entry.axes)
    return _optimum_lines(best, optima)


def _optimum_lines(best: Mapping[str, dict[str, Any]], optima: Mapping) -> list[str]:
    lines = []
    for est, pos in optima.items():
        row = best[est]
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
    """The whole summary.md of `runs` (`render` of their report)."""
    rep = report_lib.compute(runs, select, report, direction, metrics, estimators, rungs=rungs)
    return render(rep, histograms)


def render(rep: SweepReport, histograms: Mapping[str, Sequence[str]] | None = None) -> str:
    """The whole summary.md: best configs, paired comparisons, optimum positions, for each of
    the task's `histograms` (results key -> bin names) that histogram of every best config, and
    with successive halving (the report's `rungs`) the cells alive per rung. (A confirmation's
    summary is `dst_jax.confirm.confirmation_summary`: `runner.summary_text` picks it.)"""
    runs, best = list(rep.runs), dict(rep.best)
    rounds = max((r.get("round", 0) for r in runs), default=0)
    refined = sum(r.get("round", 0) > 0 for r in runs)
    parts = [
        f"Best config per estimator, selected by mean `{rep.select}` over seeds; "
        "mean ± std (ddof = 1) [95% Student-t interval] over seeds:",
        "",
        best_table(best, rep.metrics, rep.estimators),
        "",
        f"Paired comparisons on `{rep.report}` (same seeds, same initialisation and minibatch "
        "order);" + paired_note(runs),
        "",
        comparisons_table(rep),
        "",
        "Where each optimum lies on its temperature grid"
        + (
            f" (after {rounds} refinement round(s), {refined} runs beyond the first grid):"
            if rounds
            else ":"
        ),
        "",
        *_optimum_lines(best, rep.optima),
    ]
    for name, bins in (histograms or {}).items():
        if any(name in r["final"] for r in runs):
            parts += [
                "",
                f"`{name}` of the best config per estimator, percent (mean over seeds):",
                "",
                histogram_table(runs, best, name, bins),
            ]
    if rep.rungs:
        parts += [
            "",
            "Successive halving: cells (configs, their seeds together) trained through each "
            "rung; the tables above hold only the cells that reached the last rung:",
            "",
            halving.rung_table(runs, rep.rungs),
        ]
    return "\n".join(parts)
