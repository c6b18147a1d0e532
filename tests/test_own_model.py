"""The example of a user's own model (examples/own_model.py) runs end to end at smoke size, as
a script, and writes what a sweep writes."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_own_model_example_runs_as_a_script(tmp_path, shared_data_dir):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DST_DATA_DIR": shared_data_dir}
    cmd = [sys.executable, "examples/own_model.py", "--smoke", "--no-progress", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    files = {p.name for p in out.iterdir()}
    assert {
        "results.json",
        "summary.md",
        "curves.png",
        "heatmap_decoupled_st_test_loss.png",
    } <= files
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "own_vae" and results["dataset"] == "mnist"
    # Not the default Adam: the example's optimizer is recorded with the sweep.
    sweep = results["config"]["sweep"]
    assert (sweep["optimizer"], sweep["momentum"]) == ("sgd", 0.9)
    # Unlabelled: the data carry no labels, and the splits are still cut and counted.
    assert results["data"]["split_sizes"] == {"train": 900, "test": 200, "val": 100}
    runs = results["runs"]
    assert len(runs) == 6  # decoupled_st's 2 x 2 cells and st_gumbel_softmax's 2
    for run in runs:
        final = run["final"]
        assert {"train_loss", "train_bce", "train_kl", "val_loss", "test_loss"} <= set(final)
        assert all(math.isfinite(final[k]) for k in ("train_loss", "val_loss", "test_loss"))
        # The negative ELBO per image of 784 Bernoulli pixels: below the untrained ~543 nats.
        assert final["test_loss"] < 540
    assert "decoupled_st" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_own_model_example_runs_from_the_command_line(tmp_path, shared_data_dir):
    # The same task by MODULE:FACTORY, with the command line's sweep flags.
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DST_DATA_DIR": shared_data_dir}
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        "examples/own_model.py:make_task",
        "--smoke",
        "--estimators",
        "decoupled_st",
        "--tau-f",
        "0.5",
        "--tau-b",
        "1",
        "--max-steps",
        "20",
        "--eval-every",
        "10",
        "--optimizer",
        "adamw",
        "--weight-decay",
        "1e-4",
        "--no-progress",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "own_vae"
    assert results["config"]["sweep"]["optimizer"] == "adamw"
    assert [(r["estimator"], r["tau_f"], r["tau_b"]) for r in results["runs"]] == [
        ("decoupled_st", 0.5, 1.0)
    ]
    assert math.isfinite(results["runs"][0]["final"]["test_loss"])


def test_make_task_is_a_zero_argument_factory():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import own_model
    finally:
        sys.path.remove(str(ROOT / "examples"))
    from dst_jax.tasks import TaskBase

    task = own_model.make_task()
    assert isinstance(task, TaskBase) and task.reads_labels is False
    assert task.config.batch_size == 100 and task.name == "own_vae"
