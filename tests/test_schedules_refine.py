"""Schedules, adaptive refinement, validation splits and model selection in the sweep engine."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_sweep import TASK, Interrupt, finals

from dst_jax.runner import run_sweep
from dst_jax.sweep import SweepConfig, grid, refine, schedules, train_runs
from dst_jax.tasks import common
from experiments import report

# -- schedules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0, 7, 25, 40])
def test_temperature_schedules_follow_their_formulas(t):
    T, tau0, tau1 = 40, 2.0, 0.1
    frac = t / T
    kinds = {name: i for i, name in enumerate(schedules.TAU_SCHEDULES)}
    got = {
        k: float(schedules.temperature(jnp.int32(i), tau0, tau1, frac)) for k, i in kinds.items()
    }
    assert got["constant"] == tau0
    assert got["linear"] == pytest.approx(tau0 + (tau1 - tau0) * t / T, rel=1e-6)
    assert got["exp"] == pytest.approx(tau0 * (tau1 / tau0) ** (t / T), rel=1e-6)


def test_learning_rate_schedules():
    T, lr = 100, 1e-3
    constant = schedules.learning_rate(jnp.int32(0), lr, T)
    cosine = schedules.learning_rate(jnp.int32(1), lr, T)
    for count in (0, 30, 100, 150):
        assert float(constant(count)) == pytest.approx(lr)
        want = lr * 0.5 * (1 + math.cos(math.pi * min(count, T) / T))
        assert float(cosine(count)) == pytest.approx(want, rel=1e-5, abs=1e-12)


def scheduled(run, **hp):
    return dataclasses.replace(run, **hp)


@pytest.mark.slow
def test_a_scheduled_config_in_a_grid_equals_it_alone():
    data, _ = TASK.load_data(None)
    base = grid.Run("decoupled_st", 2.0, 1.0, 0, 1e-3)
    runs = [
        scheduled(base, tau_schedule="exp", tau_f_final=0.1, tau_b_final=None),
        scheduled(base, tau_schedule="linear", tau_f_final=0.5, tau_b_final=3.0, seed=1),
        scheduled(base, lr_schedule="cosine"),
        base,
    ]
    one = jax.devices()[:1]
    together = train_runs(TASK, data, runs, steps=30, eval_every=15, devices=one)
    alone = [
        train_runs(TASK, data, [r], steps=30, eval_every=15, devices=one).runs[0] for r in runs
    ]
    np.testing.assert_allclose(finals(together.runs), finals(alone), rtol=1e-5, atol=1e-6)
    # The schedules change the training: no two of the four runs end alike.
    assert len({round(r["final"]["train_loss"], 5) for r in together.runs}) == 4
    assert together.runs[0]["tau_schedule"] == "exp" and together.runs[0]["tau_f_final"] == 0.1


def test_grid_axes_of_hyperparameters_and_their_checks():
    sweep = SweepConfig(
        estimators=("decoupled_st", "softmax_ste", "reinmax"),
        tau_f=(0.5, 2.0),
        tau_b=(1.0,),
        seeds=1,
        axes={"tau_schedule": ("linear", "exp"), "tau_f_final": (0.1,), "lr_schedule": ("cosine",)},
    )
    runs = grid.expand(sweep, TASK)
    assert len(runs) == (2 + 2 + 2) * 2  # 2 x 1 grid, two single axes of 2; two schedules
    assert {r.tau_schedule for r in runs} == {"linear", "exp"}
    assert all(r.lr_schedule == "cosine" for r in runs)
    softmax = [r for r in runs if r.estimator == "softmax_ste"]
    assert all((r.tau_f_final, r.tau_b_final) == (0.1, 0.1) for r in softmax)
    # ReinMax anneals the temperature it reads (tau_b); its forward stays at 1.
    reinmax = [r for r in runs if r.estimator == "reinmax"]
    assert all((r.tau_f_final, r.tau_b_final) == (None, 0.1) for r in reinmax)
    with pytest.raises(ValueError, match="need --tau-schedule linear or exp"):
        grid.expand(dataclasses.replace(sweep, axes={"tau_f_final": (0.1,)}), TASK)
    with pytest.raises(ValueError, match="must be one of"):
        grid.expand(dataclasses.replace(sweep, axes={"tau_schedule": ("cosine",)}), TASK)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        grid.expand(dataclasses.replace(sweep, axes={"momentum": (0.9,)}), TASK)
    # Two backward final temperatures: the two-temperature estimator trains both, the
    # single-temperature ones (which anneal only the forward axis' value) train each config once.
    two = grid.expand(
        dataclasses.replace(
            sweep,
            axes={"tau_schedule": ("exp",), "tau_f_final": (0.1,), "tau_b_final": (0.3, 0.4)},
        ),
        TASK,
    )
    assert len(two) == len(set(two)) == 2 * 2 + 2 + 2
    assert sum(r.estimator == "decoupled_st" for r in two) == 4


# -- refinement ----------------------------------------------------------------------------------


def records(runs, score):
    return [
        {**dataclasses.asdict(r), "diverged": False, "final": {"val_m": score(r.tau_f, r.tau_b)}}
        for r in runs
    ]


def peak(tf, tb):
    """A known optimum at (tau_f, tau_b) = (0.05, 1.0): maximise -log-distance to it."""
    return -((math.log(tf) - math.log(0.05)) ** 2) - (math.log(tb) - math.log(1.0)) ** 2


def test_refinement_adds_the_cells_beyond_the_edge_until_the_optimum_is_interior():
    sweep = SweepConfig(
        estimators=("decoupled_st",), tau_f=(0.2, 0.4), tau_b=(0.5, 1.0, 2.0), seeds=2
    )
    trained = grid.expand(sweep, TASK)
    added_per_round = []
    for _ in range(4):
        new = refine.new_runs(records(trained, peak), trained, "val_m", "max")
        added_per_round.append(sorted({(r.tau_f, r.tau_b) for r in new}))
        assert all(r.seed in (0, 1) for r in new) and len(new) == 2 * len(added_per_round[-1])
        trained += new
    # 0.2^2 / 0.4 = 0.1, then 0.1^2 / 0.2 = 0.05 (the optimum, still on the edge), then 0.025,
    # after which 0.05 is interior and nothing is added.
    assert added_per_round == [
        [(0.1, 0.5), (0.1, 1.0), (0.1, 2.0)],
        [(0.05, 0.5), (0.05, 1.0), (0.05, 2.0)],
        [(0.025, 0.5), (0.025, 1.0), (0.025, 2.0)],
        [],
    ]


def test_refinement_extends_single_temperature_axes_where_their_tau_acts():
    sweep = SweepConfig(estimators=("reinmax",), tau_f=(0.5, 1.0), seeds=1)
    trained = grid.expand(sweep, TASK)  # ReinMax cells (1, 0.5), (1, 1)
    new = refine.new_runs(records(trained, lambda tf, tb: -tb), trained, "val_m", "max")
    assert [(r.tau_f, r.tau_b) for r in new] == [(1.0, 0.25)]


class PeakTask:
    """A synthetic task whose validation score is a known function of tau_f, peaking at 0.2
    (the score ignores the model; training still runs, on a one-parameter regression)."""

    name = "peak"
    config = dataclasses.make_dataclass("PeakConfig", [("batch_size", int, 10)], frozen=True)()
    unit_form = "categorical"
    accepts_relaxation = False
    headline_metric = "score"
    metric_directions = {"score": "max"}
    heatmap_metrics = ()
    histograms = {}

    def load_data(self, data_dir):
        x = np.linspace(0, 1, 40, dtype=np.float32)[:, None]
        split = {"x": x, "y": np.zeros(40, np.int32)}
        data = {f"{s}_{k}": v for s in ("train", "val", "test") for k, v in split.items()}
        return data, {"dataset": "synthetic"}

    def init_params(self, key, data):
        return jnp.zeros(())

    def loss(self, params, key, batch, hp):
        return jnp.mean((params - batch.x) ** 2), {}

    def evaluate(self, params, key, batch, hp):
        return {"score": -((jnp.log(hp.tau_f) - jnp.log(0.2)) ** 2) + 0 * params}

    def param_metrics(self, params):
        return {}

    def figure_arrays(self, params, data):
        return {}


@pytest.mark.slow
def test_refine_rounds_end_to_end_resume_to_the_same_results(tmp_path):
    sweep = SweepConfig(
        estimators=("softmax_ste",),
        tau_f=(0.8, 1.6),
        seeds=1,
        epochs=2,
        eval_every=2,
        refine=3,
        chunk_size=4,
        checkpoint_every_s=0.0,
    )
    task = PeakTask()
    quiet = {"progress": False, "log": lambda *a: None}
    full = run_sweep(task, sweep, str(tmp_path / "full"), **quiet)
    by_round = {}
    for r in full["runs"]:
        by_round.setdefault(r["round"], []).append(r["tau_f"])
    # 0.8 is the low edge: 0.4, then 0.2 (the peak, still an edge), then 0.1; then interior.
    assert by_round == {0: [0.8, 1.6], 1: [0.4], 2: [0.2], 3: [0.1]}
    summary = (tmp_path / "full" / "summary.md").read_text()
    assert "after 3 refinement round(s), 3 runs beyond the first grid" in summary
    assert "softmax_ste: tau_f = 0.2 (interior); interior" in summary

    def stop_in_round_two(est, k, j):
        calls.append(est)
        if len(calls) == 4 + 4 + 2:  # grid and round 1: 4 segments each; mid round 2
            raise Interrupt

    calls: list = []
    out = str(tmp_path / "resumed")
    with pytest.raises(Interrupt):
        run_sweep(task, sweep, out, callback=stop_in_round_two, **quiet)
    run_sweep(task, sweep, out, **quiet)
    got = json.loads((tmp_path / "resumed" / "results.json").read_text())
    want = json.loads((tmp_path / "full" / "results.json").read_text())
    assert got == want

    # A finished sweep without refinement, rerun with --refine, trains only the new rounds.
    calls = []
    out = str(tmp_path / "extended")
    run_sweep(task, dataclasses.replace(sweep, refine=0), out, **quiet)
    run_sweep(task, sweep, out, callback=lambda est, k, j: calls.append(est), **quiet)
    assert len(calls) == 3 * 4  # three rounds of one run, four segments each; no grid run
    got = json.loads((tmp_path / "extended" / "results.json").read_text())
    assert got == want


# -- validation split and selection --------------------------------------------------------------


def test_validation_split_is_disjoint_from_training_and_fixed_by_its_seed():
    x = np.arange(1000)[:, None]
    y = np.arange(1000)
    config = common.SplitConfig(val_fraction=0.1, val_seed=3)
    a = common.make_splits(config, x, y, x[:50], y[:50])
    b = common.make_splits(config, x, y, x[:50], y[:50])
    c = common.make_splits(dataclasses.replace(config, val_seed=4), x, y, x[:50], y[:50])
    assert len(a["val_y"]) == 100 and len(a["train_y"]) == 900
    assert not set(a["val_y"]) & set(a["train_y"])
    assert set(a["val_y"]) | set(a["train_y"]) == set(range(1000))
    np.testing.assert_array_equal(a["val_y"], b["val_y"])
    assert not np.array_equal(a["val_y"], c["val_y"])
    none = common.make_splits(dataclasses.replace(config, val_fraction=0.0), x, y, x, y)
    assert "val_x" not in none and len(none["train_y"]) == 1000


@pytest.mark.slow
def test_sweeps_write_validation_and_test_metrics_and_select_on_validation(tmp_path):
    task = TASK  # its data hold a validation split
    sweep = SweepConfig(
        estimators=("decoupled_st",),
        tau_f=(0.5, 2.0),
        tau_b=(1.0,),
        seeds=1,
        epochs=2,
        eval_every=15,
    )
    res = run_sweep(task, sweep, str(tmp_path), progress=False, log=lambda *a: None)
    r = res["runs"][0]
    assert res["config"]["eval_splits"] == ["val", "test"]
    assert (
        res["config"]["sweep"]["select_on"] == "val" and res["config"]["sweep"]["test_at"] == "end"
    )
    # Validation at every evaluation, test only after the last step.
    assert all(v is not None for v in r["curve"]["val_acc_stoch"])
    assert r["curve"]["test_acc_stoch"][:-1] == [None] * (len(r["curve"]["step"]) - 1)
    assert r["final"]["test_acc_stoch"] is not None
    assert "selected by mean `val_acc_stoch`" in (tmp_path / "summary.md").read_text()
    text = report.report(str(tmp_path))
    assert "best configs selected on val, reported on test" in text
    assert "Selected on validation vs on test (`test_acc_stoch`" in text
    assert "paired" in text.lower() and "95%" in text
    # --grid prints the estimator's whole grid of each metric, rows tau_f, columns tau_b.
    text = report.report(str(tmp_path), grids=("decoupled_st",))
    assert "`test_acc_stoch` of decoupled_st, mean over seeds" in text
    for run in res["runs"]:
        assert f"| {run['tau_f']:g} | {run['final']['test_acc_stoch']:.4f} |" in text
    with pytest.raises(SystemExit, match="no runs of it"):
        report.report(str(tmp_path), grids=("reinmax",))

    # A sweep written without a validation split (older results) is reported selecting on test,
    # saying why; asking for validation selection there is an error that names the way out.
    for run in res["runs"]:
        for part in ("final", "curve"):
            run[part] = {k: v for k, v in run[part].items() if not k.startswith("val_")}
    (tmp_path / "results.json").write_text(json.dumps(res))
    text = report.report(str(tmp_path))
    assert "best configs selected on test (this sweep has no validation split" in text
    assert "selected by mean `test_acc_stoch`" in text
    with pytest.raises(SystemExit, match="--select-on test"):
        report.report(str(tmp_path), "val")


def test_an_estimator_can_have_its_own_temperature_axes():
    sweep = SweepConfig(
        estimators=("decoupled_st", "decoupled_reinmax", "reinmax"),
        tau_f=(0.1, 0.5, 1.0),
        tau_b=(0.5, 2.0),
        seeds=1,
        estimator_taus={"decoupled_reinmax": ((0.2,), (1.0, 3.0)), "reinmax": ((0.7,), ())},
    )
    cells = {}
    for r in grid.expand(sweep, TASK):
        cells.setdefault(r.estimator, []).append((r.tau_f, r.tau_b))
    assert len(cells["decoupled_st"]) == 6
    assert cells["decoupled_reinmax"] == [(0.2, 1.0), (0.2, 3.0)]
    assert cells["reinmax"] == [(1.0, 0.7)]
    with pytest.raises(ValueError, match="which the sweep does not train"):
        grid.expand(dataclasses.replace(sweep, estimators=("decoupled_st",)), TASK)
