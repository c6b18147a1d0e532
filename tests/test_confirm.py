"""Confirmation runs: a finished sweep's selected configs trained again on fresh seeds."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_XLA_FLAGS

from dst_jax import confirm, tasks
from dst_jax.sweep import results
from dst_jax.sweep.config import SweepConfig
from dst_jax.sweep.grid import Run

ROOT = Path(__file__).resolve().parents[1]


def _run(estimator, tau_f, tau_b, seed, val, test=None):
    record = {
        **Run(estimator, tau_f, tau_b, seed, 1e-3).__dict__,
        "diverged": False,
        "diverged_step": None,
        "final": {"val_acc_stoch": val, "test_acc_stoch": test if test is not None else val},
        "curve": {"step": [10]},
    }
    return record


def _screen(runs, select_on="val"):
    return {
        "task": "sbn",
        "dataset": "fashion_mnist",
        "config": {
            "task": {"hidden": [8, 8], "train_subset": 300},
            "sweep": {"select_on": select_on, "test_at": "end", "prng": "threefry2x32"},
            "steps": 10,
        },
        "runs": runs,
    }


def test_selected_configs_are_each_estimators_best_and_its_best_diagonal():
    runs = []
    for seed in (0, 1):
        # decoupled_st: the best cell (0.5, 2) lies off the diagonal; (1, 1) is the best diagonal
        for (tf, tb), v in {
            (0.5, 2.0): 0.9,
            (1.0, 1.0): 0.8,
            (2.0, 2.0): 0.7,
            (2.0, 0.5): 0.6,
        }.items():
            runs.append(_run("decoupled_st", tf, tb, seed, v + 0.01 * seed))
        # decoupled_reinmax: its best cell is on the diagonal, so no second config
        for (tf, tb), v in {(0.5, 0.5): 0.85, (0.5, 2.0): 0.5}.items():
            runs.append(_run("decoupled_reinmax", tf, tb, seed, v))
        for tau, v in {0.5: 0.7, 2.0: 0.75}.items():
            runs.append(_run("softmax_ste", tau, tau, seed, v))
    screen = _screen(runs)
    task = confirm.task_from_results(screen)
    assert task.config.hidden == (8, 8) and task.config.train_subset == 300
    chosen = confirm.selected_configs(task, screen)
    got = [(c["estimator"], c["tau_f"], c["tau_b"], c["role"]) for c in chosen]
    assert got == [
        ("decoupled_st", 0.5, 2.0, "selected"),
        ("decoupled_st", 1.0, 1.0, "diagonal"),
        ("decoupled_reinmax", 0.5, 0.5, "selected"),
        ("softmax_ste", 2.0, 2.0, "selected"),
    ]
    assert chosen[0]["screen_score"] == pytest.approx(0.905)
    assert chosen[0]["screen_seeds"] == [0, 1]
    without = confirm.selected_configs(task, screen, diagonals=False)
    assert [c["role"] for c in without] == ["selected"] * 3
    only = confirm.selected_configs(task, screen, ["softmax_ste"])
    assert [c["estimator"] for c in only] == ["softmax_ste"]
    with pytest.raises(ValueError, match="not in the screen"):
        confirm.selected_configs(task, screen, ["reinmax"])


def _two_estimator_runs():
    runs = []
    for seed in (0, 1):
        for (tf, tb), v in {(0.5, 2.0): 0.9, (1.0, 1.0): 0.8, (2.0, 0.5): 0.6}.items():
            runs.append(_run("decoupled_st", tf, tb, seed, v + 0.01 * seed))
        for tau, v in {0.5: 0.7, 2.0: 0.75}.items():
            runs.append(_run("softmax_ste", tau, tau, seed, v))
    return runs


def test_a_screen_split_by_estimator_selects_what_the_whole_screen_selects(tmp_path):
    runs = _two_estimator_runs()
    whole = _screen(runs)
    part_a = _screen([r for r in runs if r["estimator"] == "decoupled_st"])
    part_b = _screen([r for r in runs if r["estimator"] == "softmax_ste"])
    merged = confirm.merge_screens([("a", part_a), ("b", part_b)])
    task = confirm.task_from_results(whole)
    assert confirm.selected_configs(task, merged) == confirm.selected_configs(task, whole)
    assert confirm.merge_screens([("a", part_a)]) is part_a
    record = confirm.confirmation_record(["a", "b"], task, merged, [], [2, 3])
    assert record["from"] == ["a", "b"] and record["screen_seeds"] == [0, 1]
    assert confirm.confirmation_record(["a"], task, part_a, [], [2])["from"] == "a"
    text = confirm.confirmation_summary(
        runs, record, "val_acc_stoch", "test_acc_stoch", "max", ("test_acc_stoch",)
    )
    assert "the screen split by estimator between `a`, `b`" in text


def test_screens_of_different_protocols_or_sharing_an_estimator_are_refused():
    runs = _two_estimator_runs()
    part_a = _screen([r for r in runs if r["estimator"] == "decoupled_st"])
    part_b = _screen([r for r in runs if r["estimator"] == "softmax_ste"])
    with pytest.raises(ValueError, match="decoupled_st is in both a and a2"):
        confirm.merge_screens([("a", part_a), ("a2", part_a)])
    other_seeds = _screen([{**r, "seed": r["seed"] + 5} for r in part_b["runs"]])
    with pytest.raises(ValueError, match="differ in seeds"):
        confirm.merge_screens([("a", part_a), ("b", other_seeds)])
    longer = {**part_b, "config": {**part_b["config"], "steps": 20}}
    with pytest.raises(ValueError, match="differ in steps"):
        confirm.merge_screens([("a", part_a), ("b", longer)])
    by_test = _screen(part_b["runs"], select_on="test")
    with pytest.raises(ValueError, match="differ in sweep.select_on"):
        confirm.merge_screens([("a", part_a), ("b", by_test)])


def test_the_command_line_refuses_screens_that_cannot_be_merged(tmp_path, capsys):
    from dst_jax.experiments import confirm as cli

    runs = _two_estimator_runs()
    part = _screen([r for r in runs if r["estimator"] == "decoupled_st"])
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(part))
    out = tmp_path / "out"
    argv = [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--max-steps", "10"]
    assert cli.main(argv) == 2
    assert "decoupled_st is in both" in capsys.readouterr().err
    assert not out.exists()


def _source(runs, steps=10, **sweep):
    task = tasks.make("sbn")
    return {
        "task": "sbn",
        "config": {
            "task": json.loads(json.dumps(dataclasses.asdict(task.config))),
            "sweep": sweep,
            "steps": steps,
            "steps_per_epoch": 540,
            "eval_every": 5,
        },
        "runs": runs,
    }


def test_runs_of_the_same_config_seed_and_protocol_are_reused_and_others_refused():
    task = tasks.make("sbn")
    sweep = SweepConfig(max_steps=10, eval_every=5)
    wanted = [Run("softmax_ste", 1.0, 1.0, s, 1e-3) for s in (3, 4)]
    done = {**_run("softmax_ste", 1.0, 1.0, 3, 0.8)}
    cut = {**_run("softmax_ste", 1.0, 1.0, 4, 0.9), "stopped": True}  # halted by halving
    other = _run("softmax_ste", 2.0, 2.0, 3, 0.7)  # another config
    source = _source([done, cut, other])
    found = confirm.reusable_records("old", source, task, sweep, wanted)
    assert list(found) == [(results.config_key(done), 3)]
    assert found[(results.config_key(done), 3)]["reused_from"] == "old"
    trained = [{**_run("softmax_ste", 1.0, 1.0, 4, 0.5), "round": 0}]
    ordered, figures = confirm.in_run_order(wanted, trained, found)
    assert [r["seed"] for r in ordered] == [3, 4] and "reused_from" not in ordered[1]
    assert figures == []
    _, figures = confirm.in_run_order(wanted, trained, found, [{"gate_hist": [1.0]}])
    assert figures == [None, {"gate_hist": [1.0]}]  # the reused run has no arrays
    # A source written before train_* were measured at the evaluation's step: they are left out.
    old_done = {**done, "final": {**done["final"], "train_loss": 0.3}}
    old_done["curve"] = {"step": [10], "train_loss": [0.3], "val_acc_stoch": [0.8]}
    found = confirm.reusable_records("old", _source([old_done]), task, sweep, wanted)
    (reused,) = found.values()
    assert "train_loss" not in reused["final"] and "train_loss" not in reused["curve"]
    assert reused["curve"]["val_acc_stoch"] == [0.8]
    current = {**_source([old_done]), "train_metrics": results.TRAIN_METRICS}
    (kept,) = confirm.reusable_records("new", current, task, sweep, wanted).values()
    assert kept["final"]["train_loss"] == 0.3
    with pytest.raises(ValueError, match="trained with steps 20"):
        confirm.reusable_records("old", _source([done], steps=20), task, sweep, wanted)
    with pytest.raises(ValueError, match="trained with sweep.optimizer 'sgd'"):
        confirm.reusable_records("old", _source([done], optimizer="sgd"), task, sweep, wanted)
    changed = _source([done])
    changed["config"]["task"]["hidden"] = [8, 8]
    with pytest.raises(ValueError, match="trained with task config"):
        confirm.reusable_records("old", changed, task, sweep, wanted)
    # A source written before a task config field existed was trained at its default.
    older = _source([done])
    del older["config"]["task"]["eval_batch_size"]
    assert list(confirm.reusable_records("old", older, task, sweep, wanted)) == [
        (results.config_key(done), 3)
    ]
    older["config"]["task"]["eval_batch_size"] = task.config.eval_batch_size + 1
    with pytest.raises(ValueError, match="trained with task config"):
        confirm.reusable_records("old", older, task, sweep, wanted)


def test_selection_follows_the_screens_split_and_direction():
    runs = [_run("softmax_ste", t, t, 0, val=v, test=-v) for t, v in ((0.5, 0.2), (1.0, 0.9))]
    task = tasks.make("sbn")
    by_val = confirm.selected_configs(task, _screen(runs, "val"))
    by_test = confirm.selected_configs(task, _screen(runs, "test"))
    assert by_val[0]["tau_f"] == 1.0 and by_test[0]["tau_f"] == 0.5


def test_fresh_seeds_never_overlap_the_screens():
    screen = _screen([_run("softmax_ste", 1.0, 1.0, s, 0.5) for s in (0, 1, 2)])
    assert confirm.fresh_seeds(screen, 3) == [3, 4, 5]
    assert confirm.fresh_seeds(screen, 2, first=10) == [10, 11]
    with pytest.raises(ValueError, match="fresh seeds"):
        confirm.fresh_seeds(screen, 2, first=2)


def test_confirmation_runs_are_every_config_on_every_seed_grouped_by_estimator():
    chosen = [
        {**dict(zip(results.CONFIG_KEYS, results.config_key(r), strict=True)), "role": role}
        for r, role in (
            (_run("decoupled_st", 0.5, 2.0, 0, 0.9), "selected"),
            (_run("softmax_ste", 1.0, 1.0, 0, 0.8), "selected"),
            (_run("decoupled_st", 1.0, 1.0, 0, 0.8), "diagonal"),
        )
    ]
    runs = confirm.confirmation_runs(chosen, [3, 4])
    assert [(r.estimator, r.tau_f, r.seed) for r in runs] == [
        ("decoupled_st", 0.5, 3),
        ("decoupled_st", 0.5, 4),
        ("decoupled_st", 1.0, 3),
        ("decoupled_st", 1.0, 4),
        ("softmax_ste", 1.0, 3),
        ("softmax_ste", 1.0, 4),
    ]


def test_a_folder_that_is_not_a_finished_sweep_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        confirm.load_screen(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no results.json"):
        confirm.load_screen(str(tmp_path))
    (tmp_path / "results.json").write_text("{trunc")
    with pytest.raises(ValueError, match="cannot read"):
        confirm.load_screen(str(tmp_path))
    (tmp_path / "results.json").write_text(json.dumps({**_screen([]), "runs": []}))
    with pytest.raises(ValueError, match="holds no runs"):
        confirm.load_screen(str(tmp_path))


def _cli(module: str, *args: str, data_dir: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DST_DATA_DIR": data_dir,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": TEST_XLA_FLAGS,
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args, "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


TINY = ("--set", "train_subset=400", "--set", "test_subset=200", "--set", "n_eval_samples=2")


@pytest.mark.slow
def test_confirmation_of_a_smoke_sweep_end_to_end(tmp_path, shared_data_dir):
    screen_dir, conf_dir, alone_dir = tmp_path / "screen", tmp_path / "confirm", tmp_path / "alone"
    common = ("--max-steps", "12", "--eval-every", "6", *TINY)
    proc = _cli(
        "experiments.run", "sbn", "--out", str(screen_dir), "--smoke", *common,
        "--estimators", "decoupled_st,softmax_ste", "--tau-f", "0.5,2", "--tau-b", "0.5,2",
        data_dir=shared_data_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    screen = json.loads((screen_dir / "results.json").read_text())

    proc = _cli(
        "experiments.confirm", str(screen_dir), "--out", str(conf_dir), "--seeds", "2",
        "--max-steps", "12", "--eval-every", "6", data_dir=shared_data_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((conf_dir / "results.json").read_text())
    record = res["confirmation"]
    assert record["from"] == str(screen_dir) and record["screen_seeds"] == [0]
    assert record["seeds"] == [1, 2]
    assert not set(record["seeds"]) & {r["seed"] for r in screen["runs"]}
    task = confirm.task_from_results(screen)
    expected = confirm.selected_configs(task, screen)
    assert [(c["estimator"], c["tau_f"], c["tau_b"]) for c in record["configs"]] == [
        (c["estimator"], c["tau_f"], c["tau_b"]) for c in expected
    ]
    trained = {(r["estimator"], r["tau_f"], r["tau_b"], r["seed"]) for r in res["runs"]}
    assert trained == {
        (c["estimator"], c["tau_f"], c["tau_b"], s) for c in expected for s in (1, 2)
    }
    assert res["config"]["task"] == screen["config"]["task"]
    text = (conf_dir / "summary.md").read_text()
    assert "Confirmation of the configs selected by" in text and "fresh seeds [1, 2]" in text
    assert (conf_dir / "curves.png").exists() and (conf_dir / "timing.json").exists()
    report = subprocess.run(
        [sys.executable, "-m", "experiments.report", str(conf_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    assert "Confirmation of the configs selected by" in report.stdout

    # The same confirmation again, reusing the first one's runs: nothing is trained, and the
    # records are the first one's.
    again_dir = tmp_path / "again"
    proc = _cli(
        "experiments.confirm", str(screen_dir), "--out", str(again_dir), "--seeds", "2",
        "--max-steps", "12", "--eval-every", "6", "--reuse", str(conf_dir),
        data_dir=shared_data_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((again_dir / "results.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "reused_from"} for r in again["runs"]]
    assert strip == res["runs"] and {r["reused_from"] for r in again["runs"]} == {str(conf_dir)}
    assert again["confirmation"]["reused"] == {"from": [str(conf_dir)], "runs": len(res["runs"])}
    assert "were trained earlier and are taken from" in (again_dir / "summary.md").read_text()
    timing = json.loads((again_dir / "timing.json").read_text())
    assert timing["per_estimator"] == {}  # nothing compiled or trained

    # A confirmed run is the same run as that config trained in an ordinary sweep on that seed.
    sel = record["configs"][0]
    proc = _cli(
        "experiments.run", "sbn", "--out", str(alone_dir), "--smoke", *common,
        "--estimators", sel["estimator"], "--tau-f", str(sel["tau_f"]),
        "--tau-b", str(sel["tau_b"]), "--seeds", "3", data_dir=shared_data_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    alone = {r["seed"]: r for r in json.loads((alone_dir / "results.json").read_text())["runs"]}
    for r in res["runs"]:
        if results.config_key(r) == results.config_key(sel):
            ref = alone[r["seed"]]
            for metric, value in r["final"].items():
                assert value == pytest.approx(ref["final"][metric], abs=1e-6), metric


def test_a_halved_screen_confirms_only_cells_that_reached_the_last_rung():
    # Halving stopped (0.5, 0.5) at its first rung with the best early score; the selection is
    # among the cells trained to the end, as for every "best" of a halved sweep.
    stopped = {**_run("softmax_ste", 0.5, 0.5, 0, 0.99), "stopped": True, "rung": 0}
    done = [
        {**_run("softmax_ste", t, t, 0, v), "stopped": False, "rung": 1}
        for t, v in ((1.0, 0.8), (2.0, 0.7))
    ]
    screen = _screen([stopped, *done])
    chosen = confirm.selected_configs(tasks.make("sbn"), screen)
    assert [(c["estimator"], c["tau_f"]) for c in chosen] == [("softmax_ste", 1.0)]
