"""The sweep engine: grid = single runs, sharding, resume, divergence, results format."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from cli_task import teacher_data

from dst_jax import estimators
from dst_jax.runner import run_sweep
from dst_jax.sweep import grid
from dst_jax.sweep.checkpoint import Checkpoint
from dst_jax.sweep.config import SweepConfig
from dst_jax.sweep.engine import train_runs
from dst_jax.sweep.train import make_fns
from dst_jax.tasks.sbn import Config, SBNTask


class TinySBN(SBNTask):
    """The real SBN task on a small synthetic problem (labels from a fixed linear teacher)."""

    def load_data(self, data_dir):
        return teacher_data(), {"dataset": "synthetic"}


def tiny_task() -> TinySBN:
    return TinySBN(
        Config(hidden=(16, 16), n_classes=4, batch_size=20, n_eval_samples=2, eval_batch_size=100)
    )


# One task object for the whole file: the engine caches compiled programs per task, so the tests
# share compilations (every test trains 30 steps, evaluated every 15).
TASK = tiny_task()


SWEEP = SweepConfig(
    estimators=("decoupled_st", "softmax_ste"),
    tau_f=(0.5, 2.0),
    tau_b=(0.5, 2.0),
    seeds=2,
    epochs=1.5,  # 20 steps an epoch: 30 steps
    eval_every=15,
    test_at="every",
)


def finals(runs):
    return np.array(
        [[r["final"][k] for k in ("test_acc_stoch", "test_loss", "train_loss")] for r in runs]
    )


@pytest.fixture(scope="module")
def task_and_data():
    data, _ = TASK.load_data(None)
    return TASK, data


def test_grid_expansion_counts_and_order():
    sweep = dataclass_replace(SWEEP, estimators=("decoupled_st", "softmax_ste", "reinmax"))
    runs = grid.expand(sweep, TASK)
    assert len(runs) == 2 * 2 * 2 + 2 * 2 + 2 * 2
    assert runs[0] == grid.Run("decoupled_st", 0.5, 0.5, 0, 1e-3)
    assert all(r.tau_f == r.tau_b for r in runs if r.estimator == "softmax_ste")
    # ReinMax's temperature acts in the backward pass only: written to tau_b, tau_f = 1.
    assert {(r.tau_f, r.tau_b) for r in runs if r.estimator == "reinmax"} == {(1, 0.5), (1, 2)}
    # Every estimator the task accepts, by default: all sampling ones, no relaxation for sbn,
    # and no score-function one (RLOO needs a task loss that builds its surrogate).
    default = {r.estimator for r in grid.expand(dataclass_replace(SWEEP, estimators=None), TASK)}
    assert default == set(estimators.REGISTRY.names(discrete=True)) - {"rloo"}
    with pytest.raises(ValueError, match="rloo not available for the sbn task"):
        grid.expand(dataclass_replace(SWEEP, estimators=("rloo",)), TASK)
    with pytest.raises(ValueError, match="not available for the sbn task"):
        grid.expand(dataclass_replace(SWEEP, estimators=("softmax_relaxation",)), TASK)
    with pytest.raises(ValueError, match="tau-f"):
        grid.expand(SweepConfig(estimators=("decoupled_st",), tau_f=(0.0,)), TASK)


def test_grid_equals_single_runs(task_and_data):
    """Config i of a 2 x 2 x 2 (tau_f, tau_b, seed) grid = config i trained alone."""
    task, data = task_and_data
    runs = grid.expand(dataclass_replace(SWEEP, estimators=("decoupled_st",)), task)
    one_device = jax.devices()[:1]
    together = train_runs(task, data, runs, steps=30, eval_every=15, devices=one_device)
    alone = [
        train_runs(task, data, [r], steps=30, eval_every=15, devices=one_device).runs[0]
        for r in runs
    ]
    np.testing.assert_allclose(finals(together.runs), finals(alone), rtol=1e-5, atol=1e-6)
    # The grid really varies: different temperatures or seeds give different losses.
    assert len({round(r["final"]["train_loss"], 6) for r in together.runs}) == len(runs)


@pytest.mark.slow
def test_four_devices_equal_one_device(task_and_data):
    task, data = task_and_data
    assert jax.device_count() == 4, "conftest forces 4 host devices"
    runs = grid.expand(SWEEP, task)
    one = train_runs(task, data, runs, steps=30, eval_every=15, devices=jax.devices()[:1])
    four = train_runs(task, data, runs, steps=30, eval_every=15, chunk_size=5)
    assert four.timing["decoupled_st"]["chunk_size"] == 8  # rounded up to a multiple of 4
    np.testing.assert_allclose(finals(four.runs), finals(one.runs), rtol=1e-5, atol=1e-6)


def test_diverging_config_is_flagged_and_others_finish(task_and_data):
    task, data = task_and_data
    good = [
        grid.Run("decoupled_st", 1.0, 1.0, 0, 1e-3),
        grid.Run("decoupled_st", 0.5, 2.0, 1, 1e-3),
    ]
    bad = grid.Run("decoupled_st", 1.0, 1.0, 0, 1e38)  # Adam steps of ~1e38 overflow the logits
    out = train_runs(task, data, [good[0], bad, good[1]], steps=30, eval_every=15)
    flags = [r["diverged"] for r in out.runs]
    assert flags == [False, True, False]
    assert out.runs[1]["diverged_step"] is not None and 0 <= out.runs[1]["diverged_step"] < 30
    alone = train_runs(task, data, good, steps=30, eval_every=15)
    np.testing.assert_allclose(
        finals([out.runs[0], out.runs[2]]), finals(alone.runs), rtol=1e-5, atol=1e-6
    )
    # results stay strict JSON (non-finite numbers become null)
    json.dumps(out.runs, allow_nan=False)


def test_a_diverged_run_keeps_its_last_finite_parameters(task_and_data):
    """After a non-finite step the parameters are those of the last finite step, whatever the
    (unguarded) optimiser state does afterwards."""
    task, data = task_and_data
    init, segment = make_fns(task, estimators.REGISTRY["decoupled_st"], total_steps=6)
    # Adam's first step moves every weight by ~lr = 1e37: finite weights, non-finite logits.
    run = grid.Run("decoupled_st", 1.0, 1.0, 0, 1e37)
    hp = {k: v[0] for k, v in grid.hparams_array([run], 1).items()}
    run = jax.jit(segment, static_argnums=4)
    frozen, _ = run(init(hp, data), hp, data, np.int32(0), 6)
    assert bool(frozen.diverged)
    d = int(frozen.diverged_step)
    assert 1 <= d < 6  # at least one finite step was taken
    last_finite, _ = run(init(hp, data), hp, data, np.int32(0), d)
    assert not bool(last_finite.diverged)
    for a, b in zip(
        jax.tree.leaves(frozen.params), jax.tree.leaves(last_finite.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
        assert np.isfinite(a).all()


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resume_mid_chunk_gives_identical_results(tmp_path):
    task = TASK
    sweep = dataclass_replace(SWEEP, chunk_size=4, checkpoint_every_s=0.0)
    run_sweep(task, sweep, str(tmp_path / "full"), progress=False, log=lambda *a: None)

    def stop_mid_second_chunk(est, k, j):
        if (est, k, j) == ("decoupled_st", 1, 0):
            raise Interrupt

    out = str(tmp_path / "resumed")
    with pytest.raises(Interrupt):
        run_sweep(
            task, sweep, out, progress=False, callback=stop_mid_second_chunk, log=lambda *a: None
        )
    (ckpt,) = (tmp_path / "resumed" / "checkpoint").iterdir()  # the sweep's fingerprint folder
    assert (ckpt / "chunk-grid-decoupled_st-0000.json").exists()
    assert (ckpt / "state-grid-decoupled_st-0001.json").exists()
    assert (ckpt / "state-grid-decoupled_st-0001").is_dir()  # the orbax arrays
    assert not (tmp_path / "resumed" / "results.json").exists()

    segments_run = []
    run_sweep(
        task,
        sweep,
        out,
        progress=False,
        log=lambda *a: None,
        callback=lambda est, k, j: segments_run.append((est, k, j)),
    )
    # Only the rest was trained: chunk 0 was skipped and chunk 1 started at its second segment.
    assert segments_run[0] == ("decoupled_st", 1, 1)
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert resumed == full


def test_resume_refuses_a_different_sweep(tmp_path):
    task = TASK
    sweep = dataclass_replace(SWEEP, estimators=("softmax_ste",))
    run_sweep(task, sweep, str(tmp_path), progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match="different sweep"):
        run_sweep(
            task,
            dataclass_replace(sweep, seeds=3),
            str(tmp_path),
            progress=False,
            log=lambda *a: None,
        )


def test_resume_ignores_how_often_a_sweep_saves(tmp_path):
    sweep = dataclass_replace(SWEEP, estimators=("softmax_ste",), seeds=1)
    quiet = dict(progress=False, log=lambda *a: None)
    first = run_sweep(TASK, sweep, str(tmp_path), **quiet)
    again = run_sweep(
        TASK, dataclass_replace(sweep, checkpoint_every_s=5.0), str(tmp_path), **quiet
    )
    assert again["runs"] == first["runs"]
    assert len(list((tmp_path / "checkpoint").iterdir())) == 1  # the same sweep's folder


def test_results_file_format(tmp_path):
    task = TASK
    sweep = dataclass_replace(SWEEP, seeds=1)
    run_sweep(task, sweep, str(tmp_path), progress=False, log=lambda *a: None)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["task"] == "sbn" and res["dataset"] == "synthetic"
    assert len(res["runs"]) == 4 + 2
    r = res["runs"][0]
    assert set(r) >= {"estimator", "tau_f", "tau_b", "seed", "lr", "final", "curve", "diverged"}
    assert r["curve"]["step"] == [15, 30]
    assert len(r["curve"]["test_acc_stoch"]) == 2
    assert 0.0 <= r["final"]["test_acc_det"] <= 1.0
    for name in (
        "heatmap_decoupled_st_test_acc_stoch.png",
        "heatmap_decoupled_st_test_acc_det.png",
        "curves.png",
        "summary.md",
        "timing.json",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "decoupled_st" in (tmp_path / "summary.md").read_text()


def test_checkpoint_chunk_size_is_fixed_by_the_first_run(tmp_path):
    ck = Checkpoint(tmp_path)
    ck.open({"task": "sbn", "runs": []})
    assert ck.chunk_size("decoupled_st", 8) == 8  # proposed, not recorded
    assert ck.chunk_size("decoupled_st", 16, fixed=True) == 16
    assert ck.chunk_size("decoupled_st", 8) == 16


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_chunks_shrink_to_fit_device_memory(task_and_data, monkeypatch):
    """With almost no free memory the engine falls back to one config per device per chunk."""
    from dst_jax.sweep import devices

    task, data = task_and_data
    runs = grid.expand(dataclass_replace(SWEEP, estimators=("decoupled_st",)), task)
    roomy = train_runs(task, data, runs, steps=30, eval_every=15)
    assert roomy.timing["decoupled_st"]["n_chunks"] == 1
    monkeypatch.setattr(devices, "free_bytes", lambda device: 1)
    tight = train_runs(task, data, runs, steps=30, eval_every=15)
    assert tight.timing["decoupled_st"]["chunk_size"] == jax.device_count()
    assert tight.timing["decoupled_st"]["n_chunks"] == len(runs) // jax.device_count()
    np.testing.assert_allclose(finals(tight.runs), finals(roomy.runs), rtol=1e-5, atol=1e-6)


def _toy(key, logits, tau_f, tau_b):
    """A toy two-temperature estimator: Decoupled ST with the two temperatures swapped."""
    return estimators.decoupled_st(key, logits, tau_b, tau_f)


def _toy_bernoulli(key, logits, tau_f, tau_b):
    return estimators.decoupled_st_bernoulli(key, logits, tau_b, tau_f)


@pytest.mark.slow
def test_a_registered_estimator_reaches_grid_results_summary_and_heatmaps(tmp_path):
    """One function per form and one registry entry: nothing else to touch."""
    toy = estimators.Estimator("toy_swapped", _toy, _toy_bernoulli)
    sweep = dataclass_replace(SWEEP, estimators=("toy_swapped", "softmax_ste"), seeds=1)
    with estimators.REGISTRY.scoped(toy):
        res = run_sweep(TASK, sweep, str(tmp_path), progress=False, log=lambda *a: None)
        assert "toy_swapped" in grid.accepted_estimators(TASK)
    toy_runs = [r for r in res["runs"] if r["estimator"] == "toy_swapped"]
    assert len(toy_runs) == 4  # a (tau_f, tau_b) grid: it reads both temperatures
    assert {(r["tau_f"], r["tau_b"]) for r in toy_runs} == {
        (a, b) for a in (0.5, 2) for b in (0.5, 2)
    }
    assert (tmp_path / "heatmap_toy_swapped_test_acc_stoch.png").stat().st_size > 0
    assert "| toy_swapped |" in (tmp_path / "summary.md").read_text()
    assert "toy_swapped" not in estimators.REGISTRY  # the registration ended with the block


def test_chunks_are_balanced_so_the_last_one_is_not_mostly_padding():
    from dst_jax.sweep.engine import balanced

    assert balanced(300, 246, 1) == 150  # two chunks of 150, not 246 + 54 padded to 246
    assert balanced(300, 1024, 1) == 300
    assert balanced(54, 1024, 4) == 56  # a multiple of the devices
    assert balanced(301, 100, 4) == 76  # four chunks
