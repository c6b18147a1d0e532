"""Results as data: statistics over seeds, the best-config rule, paired comparisons, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dst_jax import summary
from dst_jax.sweep import results, stats


def run(est, tf, tb, seed, **final):
    return {
        "estimator": est,
        "tau_f": tf,
        "tau_b": tb,
        "seed": seed,
        "lr": 1e-3,
        "diverged": False,
        "final": final,
    }


def test_summary_uses_ddof_1_and_a_student_t_interval():
    s = stats.summarize([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3)
    assert s.std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))  # 1.5275, not ddof=0's 1.247
    # t_{0.975, 2} = 4.302652729911275 (tables); half-width = t * std / sqrt(n).
    assert s.ci == pytest.approx(4.302652729911275 * s.std / math.sqrt(3), rel=1e-9)
    assert s.n == 3


def test_summary_of_one_value_or_none():
    one = stats.summarize([0.5, None, float("nan")])
    assert one.mean == 0.5 and one.n == 1 and math.isnan(one.std) and math.isnan(one.ci)
    none = stats.summarize([])
    assert none.n == 0 and math.isnan(none.mean)


def test_paired_differences_are_seed_by_seed():
    a = {0: 0.80, 1: 0.82, 2: 0.79, 3: 0.90}
    b = {0: 0.78, 1: 0.81, 2: 0.80}  # seed 3 missing: not paired
    p = stats.paired(a, b, "max")
    assert p.n == 3 and p.wins == 2
    np.testing.assert_allclose(p.diff.mean, np.mean([0.02, 0.01, -0.01]))
    assert stats.paired(a, b, "min").wins == 1  # for a loss, smaller is better


def test_best_config_is_the_best_mean_over_seeds_in_the_metric_direction():
    runs = [
        run("e", 0.1, 0.1, 0, val=0.9, test=0.5),
        run("e", 0.1, 0.1, 1, val=0.1, test=0.5),  # mean 0.5, but the best single run
        run("e", 0.5, 0.5, 0, val=0.6, test=0.7),
        run("e", 0.5, 0.5, 1, val=0.6, test=0.7),
        run("e", 2.0, 2.0, 0, val=float("nan"), test=0.99),  # NaN never wins
    ]
    best = results.best_per_estimator(runs, "val", "max", ("test",))
    assert (best["e"]["tau_f"], best["e"]["test_mean"]) == (0.5, 0.7)
    # A loss is minimised: the lowest mean wins.
    assert results.best_per_estimator(runs, "val", "min")["e"]["tau_f"] == 0.1


def test_selection_on_validation_reports_the_selected_configs_test_metric():
    """Validation and test disagree: the chosen config is the validation one."""
    runs = [run("e", 0.1, 0.1, s, val=0.9, test=0.6) for s in range(2)]
    runs += [run("e", 0.3, 0.3, s, val=0.7, test=0.8) for s in range(2)]
    on_val = results.best_per_estimator(runs, "val", "max", ("test",))["e"]
    on_test = results.best_per_estimator(runs, "test", "max", ("test",))["e"]
    assert (on_val["tau_f"], on_val["test_mean"]) == (0.1, 0.6)
    assert (on_test["tau_f"], on_test["test_mean"]) == (0.3, 0.8)


def test_heatmap_grid_and_the_best_cell():
    runs = [
        run("d", tf, tb, s, m=tf + 10 * tb + s)
        for tf in (0.1, 1.0)
        for tb in (0.5, 2.0, 3.0)
        for s in range(2)
    ]
    tfs, tbs, mat = results.heatmap_grid(runs, "m", "max", "d")
    assert tfs == [0.1, 1.0] and tbs == [0.5, 2.0, 3.0]
    np.testing.assert_allclose(mat[1, 2], 1.0 + 30 + 0.5)
    assert results.best_cell(mat, "max") == (1, 2)
    assert results.best_cell(mat, "min") == (0, 0)


def test_optimum_position_and_diagonal():
    runs = [
        run("d", tf, tb, 0, m=-abs(tf - 0.1) - abs(tb - 0.7))
        for tf in (0.1, 0.3, 1.0)
        for tb in (0.3, 0.7, 1.0)
    ]
    best = results.best_per_estimator(runs, "m", "max")["d"]
    assert results.optimum_position(runs, best, ("tau_f", "tau_b")) == {
        "tau_f": "low edge",
        "tau_b": "interior",
    }
    diag = results.best_diagonal(runs, "d", "m", "max")
    assert (diag["tau_f"], diag["tau_b"]) == (0.3, 0.3)


def test_summary_markdown_has_intervals_and_the_paired_tables():
    runs = []
    for s in range(3):
        runs += [run("decoupled_st", 0.1, 0.7, s, val_acc=0.85 + s / 100, test_acc=0.84 + s / 100)]
        runs += [run("decoupled_st", 0.3, 0.3, s, val_acc=0.82, test_acc=0.81 + s / 200)]
        runs += [run("softmax_ste", 0.3, 0.3, s, val_acc=0.82, test_acc=0.80)]
    text = summary.sweep_summary(
        runs, "val_acc", "test_acc", "max", ("val_acc", "test_acc"), ["decoupled_st", "softmax_ste"]
    )
    assert "| decoupled_st | 0.1 | 0.7 | 0.001 | 3/3 | 0.8600 ± 0.0100 [" in text
    # Decoupled ST's best against Softmax STE's best, and against its own diagonal.
    assert "| decoupled_st (0.1, 0.7) | softmax_ste (tau = 0.3) | 0.0500 |" in text
    assert "| 3/3 |" in text
    assert "| decoupled_st (0.1, 0.7) | decoupled_st (0.3, 0.3) diagonal |" in text
    assert "decoupled_st: tau_f = 0.1 (low edge), tau_b = 0.7 (high edge)" in text


def test_figures_of_a_config_leave_out_its_diverged_seeds():
    runs = [run("softmax_ste", 1.0, 1.0, s, val_m=0.5) for s in range(3)]
    runs[0]["diverged"] = True  # the lowest seed: the one a figure would otherwise draw
    row = results.config_table(runs, ("val_m",))[0]
    assert [r["seed"] for r in results.runs_of(runs, row)] == [0, 1, 2]
    assert [r["seed"] for r in results.runs_of(runs, row, finished=True)] == [1, 2]
    assert results.run_indices(runs, row, finished=True)[0] == 1


def test_summary_tabulates_the_tasks_histograms_of_each_best_config_over_finished_seeds():
    runs = [
        run("decoupled_st", 0.1, 0.7, 0, val_acc=0.9, hist=[0.25, 0.75]),
        run("decoupled_st", 0.1, 0.7, 1, val_acc=0.9, hist=[0.75, 0.25]),
        run("decoupled_st", 0.1, 0.7, 2, val_acc=0.9, hist=[1.0, 0.0]),
        run("decoupled_st", 0.3, 0.3, 0, val_acc=0.5, hist=[0.0, 1.0]),
    ]
    runs[2]["diverged"] = True  # left out of the mean, as in the best-config table
    text = summary.sweep_summary(
        runs, "val_acc", "val_acc", "max", ("val_acc",), ["decoupled_st"], {"hist": ("x", "y")}
    )
    assert "| estimator | config | x | y |" in text
    assert "| decoupled_st | decoupled_st (0.1, 0.7) | 50.0 | 50.0 |" in text
    # A task without that histogram in its results gets no table.
    plain = summary.sweep_summary(
        runs, "val_acc", "val_acc", "max", ("val_acc",), ["decoupled_st"], {"other": ("x", "y")}
    )
    assert "| estimator | config |" not in plain


def test_holm_adjustment_steps_down_and_skips_undefined_p_values():
    adjusted = stats.holm([0.01, 0.04, float("nan"), 0.03, 0.005])
    # sorted: 0.005 * 4, 0.01 * 3, 0.03 * 2, then max(0.04 * 1, 0.06): monotone.
    assert adjusted[:2] == pytest.approx([0.03, 0.06])
    assert math.isnan(adjusted[2])
    assert adjusted[3:] == pytest.approx([0.06, 0.02])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_paired_t_p_is_the_t_test_of_the_seed_differences():
    a = {0: 0.9, 1: 0.8, 2: 0.85, 3: 0.7}
    b = {0: 0.85, 1: 0.78, 2: 0.86, 3: 0.6, 9: 0.1}  # seed 9 has no partner
    d = np.array([a[s] - b[s] for s in range(4)])
    t = d.mean() / (d.std(ddof=1) / 2)
    from scipy import stats as scipy_stats

    assert stats.paired_t_p(a, b) == pytest.approx(2 * scipy_stats.t.sf(abs(t), 3))
    assert math.isnan(stats.paired_t_p({0: 1.0}, {0: 0.5}))  # one seed: no test


def test_summary_gives_holm_p_values_and_marks_one_seed_tables():
    runs = []
    for s in range(3):
        runs += [run("decoupled_st", 0.1, 0.7, s, val_acc=0.85 + s / 100, test_acc=0.84 + s / 90)]
        runs += [run("decoupled_st", 0.3, 0.3, s, val_acc=0.82, test_acc=0.81 + s / 200)]
        runs += [run("softmax_ste", 0.3, 0.3, s, val_acc=0.82, test_acc=0.80 + s / 300)]
    args = ("val_acc", "test_acc", "max", ("val_acc", "test_acc"), ["decoupled_st", "softmax_ste"])
    text = summary.sweep_summary(runs, *args)
    assert "| p (Holm) | A wins |" in text and "Holm-adjusted" in text
    line = next(t for t in text.splitlines() if t.startswith("| decoupled_st (0.1, 0.7) | soft"))
    best, ref = runs[0:9:3], runs[2:9:3]
    raw = stats.paired_t_p(
        {r["seed"]: r["final"]["test_acc"] for r in best},
        {r["seed"]: r["final"]["test_acc"] for r in ref},
    )
    p_holm = float(line.split("|")[5])
    assert raw < p_holm <= min(1.0, 2 * raw) + 1e-3  # two comparisons in the family
    one = summary.sweep_summary([r for r in runs if r["seed"] == 0], *args)
    assert "one seed: no inference" in one
    assert "0/1" not in one and "1/1 |" not in one.split("Paired")[1].split("Where")[0]
