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
