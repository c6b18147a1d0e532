"""The sweep report is computed once and every output reads it: summary.md of the committed
results is rendered from it byte for byte, and its facts are the rule of `results`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dst_jax import confirm, runner, summary, tasks
from dst_jax.sweep import refine, results
from dst_jax.sweep.report import build_report, compute

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    res = json.loads((ROOT / "results" / name / "results.json").read_text())
    task = confirm.task_from_results(res) if "confirmation" in res else tasks.make(res["task"])
    return task, res


@pytest.mark.parametrize(
    "name",
    [
        "sbn",
        "cae",
        "dlgn",
        "sbn-confirm",
        "cae-confirm",
        "sbn-halving",
        "sbn-halving-confirm",
        "sbn-halving-confirm-8",
        "sbn-halving-beyond",
        "sbn-halving-confirm-beyond",
        "dlgn-confirm-beyond",
        "cae-halving",
        "cae-halving-confirm",
        "cae-halving-confirm-10",
    ],
)
def test_committed_summaries_render_from_the_report_byte_for_byte(name):
    task, res = load(name)
    text = runner.summary_text(task, build_report(task, res))
    assert text + "\n" == (ROOT / "results" / name / "summary.md").read_text()


def test_the_report_holds_the_rule_of_results():
    task, res = load("sbn")
    rep = build_report(task, res)
    runs = res["runs"]
    assert rep.select == "val_acc_stoch" and rep.report == "test_acc_stoch"
    assert rep.direction == "max"
    assert rep.best == results.best_per_estimator(runs, rep.select, "max", rep.metrics)
    for est, diag in rep.diagonals.items():
        assert diag["tau_f"] == diag["tau_b"]
        assert diag == results.best_diagonal(runs, est, rep.select, "max")
    kinds = [c.kind for c in rep.comparisons]
    # The reference against every other estimator, then each off-diagonal best cell.
    assert kinds.count("reference") == len(rep.best) - 1
    assert kinds.count("diagonal") + len(rep.diagonal_is_best) == len(rep.diagonals)
    assert all(c.p_holm >= c.p for c in rep.comparisons)
    # Selecting on test picks other configs for some estimators (the optimism it shows).
    on_test = build_report(task, res, select_on="test")
    assert on_test.select == "test_acc_stoch"
    assert on_test.best == results.best_per_estimator(
        runs, "test_acc_stoch", "max", on_test.metrics
    )
    assert on_test.best != rep.best


def test_optimum_lines_and_refinement_read_the_same_positions():
    task, res = load("sbn")
    rep = build_report(task, res)
    lines = summary._optimum_lines(rep.best, rep.optima)
    for est, line in zip(rep.optima, lines, strict=True):
        assert line.startswith(f"- {est}:")
        assert ("ON THE EDGE" in line) == rep.on_edge(est)
    # Refinement extends exactly the estimators whose optimum is on an edge.
    runs = [r for r in res["runs"] if r.get("round", 0) == 0]
    first = compute(runs, rep.select, rep.select, rep.direction, ())
    trained = [refine.Run(r["estimator"], r["tau_f"], r["tau_b"], r["seed"], r["lr"]) for r in runs]
    extra = refine.runs_beyond_edges(first, trained)
    assert {r.estimator for r in extra} == {e for e in first.optima if first.on_edge(e)} - {
        e for e in first.optima if not _extendable(first, e, trained)
    }


def _extendable(rep, est, trained) -> bool:
    """Whether some axis on whose edge the estimator's optimum lies can grow (within range)."""
    own = [r for r in trained if r.estimator == est]
    for axis, where in rep.optima[est].items():
        values = sorted({getattr(r, axis) for r in own})
        if where in ("low edge", "high edge") and refine.beyond(values, where) is not None:
            return True
    return False


def test_a_temperature_free_estimator_shows_no_temperatures():
    # The relaxation is trained at placeholder temperatures; its table row must not show them.
    task, res = load("dlgn")
    text = runner.summary_text(task, build_report(task, res))
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():  # the first table: the best config per estimator
        rows.setdefault(line.split(" | ")[0], line.split(" | ")[1:3])
    assert rows["| softmax_relaxation"] == ["-", "-"]
    assert rows["| decoupled_st"] == ["0.0333333", "1"]
    assert rows["| softmax_ste"] == ["0.3", "0.3"]
