"""A user's own task through the command line (`MODULE:FACTORY`) and through Python
(`dst_jax.run_sweep`), and the package's lazily imported submodules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dst_jax.sweep.config import SweepConfig
from experiments import run

ROOT = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--estimators", "softmax_ste,decoupled_st", "--tau-f", "0.5,1", "--tau-b", "1"]
TINY_FLAGS += ["--seeds", "1", "--max-steps", "20", "--eval-every", "10", "--no-progress"]


def test_import_dst_jax_gives_its_submodules_on_first_use():
    code = (
        "import sys, dst_jax\n"
        "assert 'dst_jax.data' not in sys.modules and 'optax' not in sys.modules\n"
        "assert callable(dst_jax.data.load) and dst_jax.sweep.SweepConfig is dst_jax.SweepConfig\n"
        "from dst_jax import run_sweep\n"
        "assert run_sweep is dst_jax.runner.run_sweep\n"
        "assert 'data' in dir(dst_jax)\n"
        "try:\n    dst_jax.nosuch\nexcept AttributeError as e:\n    print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "has no attribute 'nosuch'" in proc.stdout


@pytest.mark.slow
def test_a_user_task_runs_from_the_command_line_with_sweep_flags(tmp_path):
    out = tmp_path / "teacher"
    factory = str(ROOT / "tests" / "cli_task.py") + ":make_task"
    args = [factory, "--out", str(out), *TINY_FLAGS, "--optimizer", "sgd", "--momentum", "0.9"]
    assert run.main([*args, "--hidden", "8,8", "--set", "n_eval_samples=1"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "teacher" and res["dataset"] == "synthetic-teacher"
    assert (
        res["config"]["task"]["hidden"] == [8, 8] and res["config"]["task"]["n_eval_samples"] == 1
    )
    assert res["config"]["sweep"]["optimizer"] == "sgd" and res["config"]["steps"] == 20
    assert sorted({r["estimator"] for r in res["runs"]}) == ["decoupled_st", "softmax_ste"]
    assert len(res["runs"]) == 4  # decoupled_st 2 x 1 cells, softmax_ste 2 temperatures
    for name in (
        "summary.md",
        "curves.png",
        "comparison.png",
        "heatmap_decoupled_st_test_acc_stoch.png",
    ):
        assert (out / name).is_file(), name
    timing = json.loads((out / "timing.json").read_text())
    assert timing["command"].startswith(f"python -m experiments.run {factory} ")


@pytest.mark.slow
def test_run_sweep_from_python_with_a_user_task(tmp_path):
    from cli_task import make_task

    import dst_jax

    sweep = SweepConfig(
        estimators=("softmax_ste",), tau_f=(1.0,), seeds=2, epochs=1, max_steps=20, eval_every=10
    )
    res = dst_jax.run_sweep(make_task(), sweep, str(tmp_path), progress=False, log=lambda *a: None)
    assert [r["seed"] for r in res["runs"]] == [0, 1]
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == json.loads(
        json.dumps(res["runs"])
    )
    assert "Best config per estimator" in (tmp_path / "summary.md").read_text()


def test_results_written_before_the_optimizer_setting_are_the_same_sweep():
    """A committed results.json (no optimizer fields) and a rerun of its command with the
    default optimizer are one sweep (it resumes); another optimizer is another sweep."""
    import dataclasses

    from dst_jax import runner

    res = json.loads((ROOT / "results" / "sbn" / "results.json").read_text())
    assert "optimizer" not in res["config"]["sweep"]
    old = runner._sweep_identity("sbn", res["dataset"], res["config"])
    fields = dataclasses.asdict(SweepConfig())
    now = {**res["config"], "sweep": {**res["config"]["sweep"], **{
        k: fields[k] for k in ("optimizer", "momentum", "weight_decay", "clip_norm")
    }}}  # fmt: skip
    assert runner._sweep_identity("sbn", res["dataset"], now) == old
    now["sweep"]["optimizer"] = "sgd"
    assert runner._sweep_identity("sbn", res["dataset"], now) != old
