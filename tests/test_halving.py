"""Successive halving: the rung steps, the ranking rule, survivors equal to uninterrupted runs,
resume inside and between rungs, refinement rounds, the replay on stored curves, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from test_sweep import TASK

from dst_jax.runner import run_sweep
from dst_jax.sweep import halving, results
from dst_jax.sweep.config import SweepConfig
from dst_jax.sweep.engine import train_runs
from dst_jax.sweep.grid import Run
from experiments import report as report_cli
from experiments import run as run_cli

QUIET = {"progress": False, "log": lambda *a: None}

# 9 cells of decoupled_st x 2 seeds and 3 of softmax_ste; 45 steps evaluated every 5: rungs at
# steps 5, 15 and 45 with ETA 3.
SWEEP = SweepConfig(
    estimators=("decoupled_st", "softmax_ste"),
    tau_f=(0.5, 1.0, 2.0),
    tau_b=(0.5, 1.0, 2.0),
    seeds=2,
    epochs=100,
    max_steps=45,
    eval_every=5,
    test_at="end",
    chunk_size=4,
)
HALVED = dataclasses.replace(SWEEP, halving=3)
SELECT = "val_acc_stoch"


def test_rung_steps_are_rounded_to_evaluation_steps():
    assert halving.rung_steps(2000, 500, 3) == [500, 2000]  # 222 rounds to 0: two rungs
    assert halving.rung_steps(600, 200, 3) == [200, 600]
    assert halving.rung_steps(2000, 500, 2) == [500, 1000, 2000]
    assert halving.rung_steps(200, 100, 3) == [100, 200]  # 66.7 rounds up to one evaluation
    assert halving.rung_steps(45, 5, 3) == [5, 15, 45]
    assert halving.rung_steps(54000, 3000, 3) == [3000, 6000, 18000, 54000]
    assert halving.rung_steps(54000, 3000, 3, 3) == [6000, 18000, 54000]
    assert halving.rung_steps(700, 500, 2) == [500, 700]  # the last rung is the sweep's length
    with pytest.raises(ValueError, match="rounds to 0 evaluations"):
        halving.rung_steps(20, 15, 3)
    with pytest.raises(ValueError, match="5 rungs of ETA 3 do not fit"):
        halving.rung_steps(100, 10, 3, 5)
    with pytest.raises(ValueError, match="rungs needs halving"):
        SweepConfig(rungs=3)
    with pytest.raises(ValueError, match="ETA >= 2"):
        SweepConfig(halving=1)


def _record(est, tf, tb, seed, score, diverged=False):
    return {
        "estimator": est,
        "tau_f": tf,
        "tau_b": tb,
        "seed": seed,
        "lr": 1e-3,
        "diverged": diverged,
        "final": {SELECT: score},
    }


def test_ranking_keeps_the_top_third_per_estimator_and_the_best_diagonal():
    taus = (0.5, 1.0, 2.0)
    # decoupled_st: score = tau_f - tau_b (higher is better), so the best cells lie far from
    # the diagonal; seed 1 adds 0.01 so the mean over seeds decides.
    recs = [
        _record("decoupled_st", tf, tb, s, tf - tb + 0.01 * s) for tf in taus for tb in taus
        for s in (0, 1)
    ]  # fmt: skip
    # softmax_ste: 4 cells, one NaN (never continues), one diverged seed.
    recs += [
        _record("softmax_ste", 0.5, 0.5, 0, 0.3),
        _record("softmax_ste", 1.0, 1.0, 0, math.nan),
        _record("softmax_ste", 2.0, 2.0, 0, 0.9, diverged=True),
        _record("softmax_ste", 2.0, 2.0, 1, 0.2),
        _record("softmax_ste", 3.0, 3.0, 0, 0.4),
    ]
    keep = halving.survivors(recs, SELECT, "max", 3)
    ds = {(k[1], k[2]) for k in keep if k[0] == "decoupled_st"}
    # ceil(9 / 3) = 3 best: (2, 0.5) = 1.5, (1, 0.5) = 0.5 and (2, 1) = 1.0; and the best
    # diagonal cell, all three tied at 0.005 over seeds: the first in grid order.
    assert ds == {(2.0, 0.5), (1.0, 0.5), (2.0, 1.0), (0.5, 0.5)}
    sm = {(k[1], k[2]) for k in keep if k[0] == "softmax_ste"}
    assert sm == {(3.0, 3.0), (0.5, 0.5)}  # ceil(4 / 3) = 2; the diverged seed does not count
    # The metric's direction decides: smaller is better for a loss.
    keep_min = halving.survivors(recs, SELECT, "min", 3)
    assert {(k[1], k[2]) for k in keep_min if k[0] == "decoupled_st"} == {
        (0.5, 2.0), (0.5, 1.0), (1.0, 2.0), (0.5, 0.5)
    }  # fmt: skip
    # With ETA larger than the grid, one cell continues (plus the best diagonal).
    assert (
        len([k for k in halving.survivors(recs, SELECT, "max", 100) if k[0] == "softmax_ste"]) == 1
    )


@pytest.fixture(scope="module")
def full_and_halved(tmp_path_factory):
    """The sweep trained without and with halving (in `<dir>/full` and `<dir>/halved`)."""
    tmp = tmp_path_factory.mktemp("halving")
    full = run_sweep(TASK, SWEEP, str(tmp / "full"), **QUIET)
    halved = run_sweep(TASK, HALVED, str(tmp / "halved"), **QUIET)
    return full, halved, tmp


@pytest.mark.slow
def test_a_survivor_equals_the_run_trained_without_halving(full_and_halved):
    full, halved, _ = full_and_halved
    assert halved["config"]["halving"] == {"eta": 3, "rungs": [5, 15, 45]}
    assert "halving" not in full["config"] and "halving" not in full["config"]["sweep"]
    by_key = {(results.config_key(r), r["seed"]): r for r in full["runs"]}
    reached = [r for r in halved["runs"] if not r["stopped"]]
    stopped = [r for r in halved["runs"] if r["stopped"]]
    assert reached and stopped
    for r in reached:
        want = by_key[(results.config_key(r), r["seed"])]
        assert r["stopped_step"] == 45 and r["rung"] == 2
        # Bit for bit: the same JSON numbers, curve and final (the test split included).
        assert r["final"] == want["final"] and r["curve"] == want["curve"]
        assert math.isfinite(r["final"]["test_acc_stoch"])
    for r in stopped:
        want = by_key[(results.config_key(r), r["seed"])]
        n = len(r["curve"]["step"])
        assert r["stopped_step"] == [5, 15][r["rung"]] == r["curve"]["step"][-1]
        assert r["curve"] == {k: v[:n] for k, v in want["curve"].items()}
        assert r["final"][SELECT] == want["curve"][SELECT][n - 1]
        assert r["final"]["test_acc_stoch"] is None  # the test split is evaluated at the end
    # Cells alive per rung: decoupled_st 9 -> ceil(9/3) = 3 (+ the best diagonal if not among
    # them) -> ...; softmax_ste 3 -> 1 -> 1.
    alive = halving.alive_per_rung(halved["runs"], 3)
    assert alive["softmax_ste"] == [3, 1, 1]
    assert alive["decoupled_st"][0] == 9 and alive["decoupled_st"][1] in (3, 4)
    assert alive["decoupled_st"][2] in (1, 2)
    # Every estimator's best is chosen among the runs that reached the last rung.
    best = results.best_per_estimator(halved["runs"], SELECT, "max")
    assert all(r["stopped_step"] == 45 for r in halved["runs"] if results.config_key(r) in {
        results.config_key(b) for b in best.values()
    })  # fmt: skip


def test_summary_has_the_rung_table(full_and_halved):
    _, halved, tmp = full_and_halved
    text = (tmp / "halved" / "summary.md").read_text()
    assert "| estimator | rung 0 (step 5) | rung 1 (step 15) | rung 2 (step 45) |" in text
    trained, total = halving.model_steps(halved["runs"], 45)
    assert total == 24 * 45 and trained < total
    assert f"Model-steps trained: {trained:,} of {total:,}" in text
    printed = report_cli.report(str(tmp / "halved"))
    assert "successive halving by 3 at steps 5, 15, 45." in printed
    assert "| estimator | rung 0 (step 5) |" in printed
    with pytest.raises(SystemExit, match="trained with halving already"):
        report_cli.simulate_halving(str(tmp / "halved"), 3)


class Stop(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize(
    "where,every_s",
    [
        # Inside rung 1: its chunk 0 saved after its first segment (segment 1 of the run).
        (("decoupled_st", 0, 2), 0.0),
        # Between rungs: every rung-0 chunk finished, rung 1 not saved yet.
        (("decoupled_st", 0, 1), 1e9),
    ],
)
def test_resume_inside_and_between_rungs_gives_the_same_results(
    full_and_halved, tmp_path, where, every_s
):
    _, halved, _ = full_and_halved
    sweep = dataclasses.replace(HALVED, checkpoint_every_s=every_s)

    def stop(est, k, j):
        if (est, k, j) == where:
            raise Stop

    with pytest.raises(Stop):
        run_sweep(TASK, sweep, str(tmp_path), callback=stop, **QUIET)
    (ckpt,) = (tmp_path / "checkpoint").iterdir()
    assert (ckpt / "rungstate-grid-rung0-decoupled_st-0000.npz").exists()
    assert (ckpt / "state-grid-rung1-decoupled_st-0000.json").exists() == (every_s == 0.0)
    segments = []
    again = run_sweep(TASK, sweep, str(tmp_path), callback=lambda *a: segments.append(a), **QUIET)
    assert segments[0] == (where if every_s == 1e9 else ("decoupled_st", 0, 2))
    assert again["runs"] == halved["runs"]
    assert again["config"]["halving"] == halved["config"]["halving"]


@pytest.mark.slow
def test_refinement_rounds_are_halved_too(tmp_path):
    # A 2 x 2 grid: its best cell is on an edge of both axes, so a round adds cells.
    sweep = dataclasses.replace(
        HALVED, estimators=("decoupled_st",), tau_f=(0.5, 2.0), tau_b=(0.5, 2.0), refine=1
    )
    res = run_sweep(TASK, sweep, str(tmp_path), **QUIET)
    new = [r for r in res["runs"] if r["round"] == 1]
    assert new and all(r["rung"] >= 0 for r in new)
    # The round's own cells went through the rungs: ceil(n / 3) (+ the best diagonal) after 0.
    n = len({results.config_key(r) for r in new})
    alive = halving.alive_per_rung(new, 3)["decoupled_st"]
    assert alive[0] == n and alive[1] <= math.ceil(n / 3) + 1
    # A round-1 cell that reached the end equals the same config trained without halving.
    done = next(r for r in new if not r["stopped"])
    alone = train_runs(
        TASK,
        TASK.load_data(None)[0],
        [Run(**{k: done[k] for k in ("estimator", "tau_f", "tau_b", "seed", "lr")})],
        steps=45,
        eval_every=5,
        test_at="end",
    ).runs[0]
    assert alone["final"] == done["final"] and alone["curve"] == done["curve"]


def _synthetic_results(scores_early, scores_late):
    """A results dict of one two-temperature estimator on a 3 x 3 grid, 1 seed, evaluated at
    steps 10, 30 and 90, with `val_acc_stoch` given per cell at step 10 and at steps 30 / 90."""
    taus = (0.5, 1.0, 2.0)
    runs = []
    for i, (tf, tb) in enumerate((f, b) for f in taus for b in taus):
        curve = {
            "step": [10, 30, 90],
            SELECT: [scores_early[i], scores_late[i], scores_late[i]],
            "test_acc_stoch": [None, None, scores_late[i]],
        }
        runs.append(
            {
                "estimator": "decoupled_st",
                "tau_f": tf,
                "tau_b": tb,
                "seed": 0,
                "lr": 1e-3,
                "diverged": False,
                "diverged_step": None,
                "final": {SELECT: scores_late[i], "test_acc_stoch": scores_late[i]},
                "curve": curve,
                "round": 0,
            }
        )
    return {
        "task": "sbn",
        "dataset": "synthetic",
        "config": {
            "steps": 90,
            "eval_every": 10,
            "steps_per_epoch": 10,
            "sweep": {"select_on": "val", "seeds": 1},
        },
        "runs": runs,
    }


def test_replay_on_stored_curves(tmp_path):
    early = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    # The late order is the early one, except that cell 0 (tau 0.5, 0.5) becomes the best.
    late = [0.99, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    res = _synthetic_results(early, late)
    marked = halving.replay(res["runs"], SELECT, "max", 3, [10, 90])
    kept = {(r["tau_f"], r["tau_b"]) for r in marked if not r["stopped"]}
    # Top 3 at step 10, and the best diagonal cell (2, 2) is among them.
    assert kept == {(2.0, 0.5), (2.0, 1.0), (2.0, 2.0)}
    assert {r["stopped_step"] for r in marked if r["stopped"]} == {10}
    best = results.best_per_estimator(marked, SELECT, "max")["decoupled_st"]
    assert (best["tau_f"], best["tau_b"]) == (2.0, 2.0)  # halving missed the late bloomer
    agree = halving.rank_agreement(res["runs"], "decoupled_st", SELECT, "max", 10, 90)
    assert agree["n_cells"] == 9 and agree["best_rank_early"] == 9
    # Ranks 1..9 early against 9, 1..8 late: 1 - 6 (8^2 + 8 * 1) / (9 (9^2 - 1)) = 0.4.
    assert agree["spearman"] == pytest.approx(0.4)
    # The report prints the same verdict.
    (tmp_path / "results.json").write_text(json.dumps(res))
    text = report_cli.simulate_halving(str(tmp_path), 3)
    assert "| decoupled_st | (0.5, 0.5) | 0.9900 | 0.9900 | (2, 2) | 0.9000 | 0.9000 | no |" in text
    assert "would have changed the selection of 1 of 1 estimator(s)" in text
    res_same = _synthetic_results(early, early)
    (tmp_path / "results.json").write_text(json.dumps(res_same))
    assert "would not have changed" in report_cli.simulate_halving(str(tmp_path), 3)
    with pytest.raises(SystemExit, match="not an evaluation"):
        report_cli.simulate_halving(str(tmp_path), 2, 4)


@pytest.mark.slow
def test_cli_smoke_with_halving(tmp_path, shared_data_dir):
    out = tmp_path / "smoke"
    args = ["sbn", "--smoke", "--halving", "3", "--out", str(out), "--data-dir", shared_data_dir]
    args += ["--estimators", "decoupled_st,softmax_ste", "--max-steps", "20", "--eval-every", "5"]
    assert run_cli.main([*args, "--no-progress", "--set", "train_subset=600"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["halving"] == {"eta": 3, "rungs": [5, 20]}
    assert all("stopped_step" in r and "rung" in r for r in res["runs"])
    assert "rung 0 (step 5)" in (out / "summary.md").read_text()
    assert run_cli.main([*args, "--rungs", "5", "--no-progress"]) == 2  # does not fit: one line


def test_a_sweep_without_halving_writes_what_it_wrote_before(full_and_halved):
    full, _, _ = full_and_halved
    assert all(k not in r for r in full["runs"] for k in ("rung", "stopped", "stopped_step"))
    assert set(full["config"]["sweep"]) == {
        f.name for f in dataclasses.fields(SweepConfig) if f.name not in ("halving", "rungs")
    }
    assert len(full["runs"]) == 24
