"""Bad input, damaged files and interruptions: a clear one-line error or a correct result, never
wrong numbers in silence. docs/RELIABILITY.md lists each case with the test that covers it."""

from __future__ import annotations

import dataclasses
import errno
import json
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TEST_XLA_FLAGS
from test_sweep import SWEEP, TASK, finals

from dst_jax import estimators as E
from dst_jax import io, plotting
from dst_jax.io import DiskFullError
from dst_jax.runner import run_sweep
from dst_jax.sweep import checkpoint, grid, schedules
from dst_jax.sweep.checkpoint import Checkpoint, CheckpointError
from dst_jax.sweep.engine import train_runs
from dst_jax.sweep.train import temperatures
from dst_jax.tasks import common
from experiments import report
from experiments import run as cli

QUIET = {"progress": False, "log": lambda *a: None}
ROOT = Path(__file__).resolve().parents[1]


def cli_error(argv, capsys, one_line: bool = True) -> str:
    """Runs the command line in-process; returns its one-line error (exit code 2)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    # Our own errors are one line; argparse's put its usage line before theirs.
    if one_line:
        assert err.startswith("error:") and err.count("\n") == 1 or err.startswith("usage:"), err
    return err


# -- output folder ------------------------------------------------------------------------------


def test_empty_out_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "--out is empty" in cli_error(["sbn", "--out", "", "--smoke"], capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


def test_out_that_is_a_file_is_refused_before_loading_data(capsys, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("x")
    missing = str(tmp_path / "no-data-here")  # loading data would fail with another message
    err = cli_error(["sbn", "--out", str(target), "--smoke", "--data-dir", missing], capsys)
    assert "is a file, not a folder" in err


# -- task configs and grid values ---------------------------------------------------------------


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("n_eval_samples=0", "n_eval_samples must be an int >= 1"),
        ("hidden=", "hidden must be a non-empty tuple"),
        ("batch_size=0", "batch_size must be an int >= 1"),
        ("val_fraction=1.5", "val_fraction must be a number in [0, 1)"),
    ],
)
def test_task_configs_refuse_meaningless_values(capsys, tmp_path, assignment, message):
    err = cli_error(["sbn", "--out", str(tmp_path), "--smoke", "--set", assignment], capsys)
    assert message in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "inf"], "--epochs must be a positive finite number"),
        (["--epochs", "nan"], "--epochs must be a positive finite number"),
        (["--estimators", ""], "--estimators is empty"),
        (["--tau-f", "1e39"], "tau_f must hold numbers in [1e-06, 1e+06]"),
        (["--lr", "1e-50"], "becomes 0 or inf in float32"),
        (["--refine", "-1"], "--refine must be at least 0"),
        (["--checkpoint-every-s", "0"], "--checkpoint-every-s must be a positive finite number"),
    ],
)
def test_bad_grid_values_are_one_line_errors(capsys, tmp_path, flags, message):
    assert message in cli_error(["sbn", "--out", str(tmp_path), "--smoke", *flags], capsys)


def test_duplicate_grid_values_are_trained_once_with_a_warning():
    sweep = dataclasses.replace(
        SWEEP, estimators=("decoupled_st", "decoupled_st"), tau_f=(0.5, 0.5), tau_b=(1.0,), seeds=1
    )
    with pytest.warns(UserWarning, match="more than once") as record:
        runs = grid.expand(sweep, TASK)
    assert len(record) == 2  # --estimators and --tau-f
    assert len(runs) == 1


def test_data_folder_mistakes_are_one_line_errors(capsys, tmp_path):
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    out = str(tmp_path / "out")
    err = cli_error(["sbn", "--out", out, "--smoke", "--data-dir", str(a_file)], capsys)
    assert "is a file, not a folder" in err
    err = cli_error(["sbn", "--out", out, "--smoke", "--data-dir", str(tmp_path / "nope")], capsys)
    assert "does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    # This one lists the missing files, one a line.
    err = cli_error(["sbn", "--out", out, "--smoke", "--data-dir", str(empty)], capsys, False)
    assert "Fashion-MNIST" in err and "could not be downloaded" in err


# -- checkpoints --------------------------------------------------------------------------------


def small_sweep(**changes):
    base = dataclasses.replace(SWEEP, estimators=("softmax_ste",), seeds=1, chunk_size=4)
    return dataclasses.replace(base, **changes)


def test_files_of_another_sweep_are_never_read(tmp_path):
    """The manifest gone and another grid asked for: the old chunk results are not reused."""
    run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)
    for manifest in (tmp_path / "checkpoint").rglob("manifest.json"):
        manifest.unlink()
    with pytest.raises(CheckpointError, match="different sweep"):
        run_sweep(TASK, small_sweep(tau_f=(0.25, 4.0)), str(tmp_path), **QUIET)


def chunk_file(out: Path) -> Path:
    (path,) = (out / "checkpoint").rglob("chunk-grid-softmax_ste-0000.json")
    return path


def test_damaged_chunk_files_name_the_file_and_what_to_do(tmp_path):
    run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)
    path = chunk_file(tmp_path)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=f"{path.name} is damaged.*delete it"):
        run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)
    path.write_text(json.dumps({"runs": []}))
    with pytest.raises(CheckpointError, match=f"{path.name} should hold 2 runs but holds no list"):
        run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)
    # Deleting it, as the message says, retrains that chunk and gives the same results.
    before = json.loads((tmp_path / "results.json").read_text())
    path.unlink()
    assert run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)["runs"] == before["runs"]
    # A file missing a run is not that chunk's: it is trained again, with a warning.
    path.write_text(json.dumps(json.loads(good)[:1]))
    with pytest.warns(UserWarning, match=f"{path.name} is not chunk 0.*holds 1 runs where"):
        assert run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)["runs"] == before["runs"]


def test_invalid_chunk_sizes_file_is_named(tmp_path):
    run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)
    (sizes,) = (tmp_path / "checkpoint").rglob("chunk_sizes.json")
    sizes.write_text(json.dumps({"grid-softmax_ste": -1}))
    with pytest.raises(CheckpointError, match="chunk_sizes.json holds invalid chunk sizes"):
        run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)


class Stop(Exception):
    pass


def test_a_damaged_mid_chunk_state_restarts_that_chunk(tmp_path):
    sweep = small_sweep(checkpoint_every_s=0.0)
    want = run_sweep(TASK, sweep, str(tmp_path / "clean"), **QUIET)

    def stop(est, k, j):
        if j == 0:
            raise Stop

    out = tmp_path / "damaged"
    with pytest.raises(Stop):
        run_sweep(TASK, sweep, str(out), callback=stop, **QUIET)
    arrays = [p for p in (out / "checkpoint").rglob("*") if p.is_file() and "state-" in str(p)]
    assert any(p.suffix != ".json" for p in arrays)
    for p in arrays:
        if p.suffix != ".json" and p.stat().st_size > 0:
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])  # truncated
    with pytest.warns(UserWarning, match="restarts from its first step"):
        got = run_sweep(TASK, sweep, str(out), **QUIET)
    assert got["runs"] == want["runs"]


def test_records_stay_true_across_invocations(tmp_path):
    """After a resume, timing covers every invocation and results record the chunk sizes that
    ran, not a later command's ignored --chunk-size."""
    sweep = small_sweep(estimators=("decoupled_st", "softmax_ste"))

    def stop(est, k, j):
        if est == "softmax_ste":
            raise Stop

    with pytest.raises(Stop):
        run_sweep(TASK, sweep, str(tmp_path), callback=stop, **QUIET)
    time.sleep(0.1)
    res = run_sweep(TASK, dataclasses.replace(sweep, chunk_size=2), str(tmp_path), **QUIET)
    timing = json.loads((tmp_path / "timing.json").read_text())
    # The interrupted invocation counts up to its last finished chunk, the second in full.
    first, second = timing["invocations_wall_s"]
    assert 0 < first and 0 < second
    assert timing["wall_s"] == pytest.approx(first + second, abs=0.02)
    assert timing["per_estimator"]["grid"]["decoupled_st"]["train_s"] > 0  # from the first run
    assert res["config"]["chunk_sizes"]["grid"] == {"decoupled_st": 4, "softmax_ste": 4}


def test_an_invocation_stopped_inside_its_first_chunk_counts_up_to_its_last_save(tmp_path):
    sweep = small_sweep(estimators=("decoupled_st",), checkpoint_every_s=0.0)

    def stop(est, k, j):
        if j == 1:  # after two saved segments, before the chunk ends
            raise Stop

    with pytest.raises(Stop):
        run_sweep(TASK, sweep, str(tmp_path), callback=stop, **QUIET)
    run_sweep(TASK, sweep, str(tmp_path), **QUIET)
    timing = json.loads((tmp_path / "timing.json").read_text())
    first, second = timing["invocations_wall_s"]
    assert 0 < first and 0 < second
    assert timing["wall_s"] == pytest.approx(first + second, abs=0.02)


# -- several hosts ------------------------------------------------------------------------------


@pytest.mark.slow
def test_unreachable_coordinator_fails_after_the_timeout(tmp_path):
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable, "-m", "experiments.run", "sbn", "--out", str(tmp_path), "--smoke",
            "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
            "--process-id", "1", "--distributed-timeout", "3",
        ],
        cwd=ROOT,
        env={"PATH": "", "XLA_FLAGS": TEST_XLA_FLAGS, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert time.monotonic() - t0 < 60
    assert proc.returncode != 0
    assert "waiting for 127.0.0.1" in proc.stderr
    assert f"the coordinator at 127.0.0.1:{port} did not answer within 3 s" in proc.stderr


def test_no_warning_for_a_clean_grid():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid.expand(SWEEP, TASK)


def test_selecting_on_validation_without_a_validation_split_is_refused(tmp_path):
    class NoValidation(type(TASK)):
        def load_data(self, data_dir):
            data, info = super().load_data(data_dir)
            return {k: v for k, v in data.items() if not k.startswith("val_")}, info

    task = NoValidation(TASK.config)
    with pytest.raises(ValueError, match="--set val_fraction=0.1.*--select-on test"):
        run_sweep(task, SWEEP, str(tmp_path / "val"), progress=False, log=lambda *a: None)
    assert not (tmp_path / "val" / "results.json").exists()
    test_sweep = dataclasses.replace(SWEEP, select_on="test", estimators=("softmax_ste",))
    res = run_sweep(task, test_sweep, str(tmp_path / "test"), progress=False, log=lambda *a: None)
    assert "val_acc_stoch" not in res["runs"][0]["final"]
    assert res["runs"][0]["final"]["test_acc_stoch"] is not None


# -- chunks cut another way: resumed on another chunk size or device count ----------------------


def five_runs():
    """5 runs (tau_f 0.3, 0.5, 1, 2, 3; one seed) of one estimator."""
    sweep = small_sweep(estimators=("decoupled_st",), tau_f=(0.3, 0.5, 1.0, 2.0, 3.0), tau_b=(1.0,))
    return grid.expand(sweep, TASK)


def train(tmp_path, runs, devices, **kw):
    ckpt = Checkpoint(tmp_path)
    ckpt.open({"test": "chunks"})
    data, _ = TASK.load_data(None)
    return train_runs(TASK, data, runs, steps=30, eval_every=15, checkpoint=ckpt,
                      devices=devices, **kw)  # fmt: skip


def stop_at(chunk, segment=0):
    def callback(est, k, j):
        if (k, j) == (chunk, segment):
            raise Stop

    return callback


def ckpt_file(out: Path, name: str) -> Path:
    (path,) = (out / "checkpoint").rglob(name)
    return path


@pytest.mark.slow
def test_a_chunk_file_of_other_runs_is_retrained_not_read(tmp_path):
    """5 runs in chunks of 2, stopped after two chunks; chunk_sizes.json and chunk 0 deleted;
    resumed with chunks of 3: the old chunk 1 (tau_f 1, 2) is not the new chunk 1 (tau_f 2, 3)."""
    runs, one = five_runs(), jax.devices()[:1]
    with pytest.raises(Stop):
        train(tmp_path, runs, one, chunk_size=2, callback=stop_at(2))
    ckpt_file(tmp_path, "chunk_sizes.json").unlink()
    ckpt_file(tmp_path, "chunk-grid-decoupled_st-0000.json").unlink()
    with pytest.warns(UserWarning, match="is not chunk 1 of this sweep's decoupled_st runs"):
        got = train(tmp_path, runs, one, chunk_size=3)
    want = train(tmp_path / "clean", runs, one, chunk_size=3)
    assert [r["tau_f"] for r in got.runs] == [0.3, 0.5, 1.0, 2.0, 3.0]
    assert got.runs == want.runs
    # A chunk file holding fewer runs than its chunk (2 of 3) is retrained the same way.
    path = ckpt_file(tmp_path, "chunk-grid-decoupled_st-0000.json")
    path.write_text(json.dumps(json.loads(path.read_text())[:2]))
    with pytest.warns(UserWarning, match="holds 2 runs where the chunk has 3"):
        assert train(tmp_path, runs, one, chunk_size=3).runs == want.runs


@pytest.mark.slow
def test_a_sweep_resumes_on_another_device_count(tmp_path):
    """Chunks of 3 recorded on one device, resumed on two: the chunks keep their runs (a padding
    config evens the shards), the unfinished chunk's saved state (3 configs) restarts."""
    runs = five_runs()
    one, two = jax.devices()[:1], jax.devices()[:2]
    with pytest.raises(Stop):
        train(tmp_path, runs, one, chunk_size=3, checkpoint_every_s=0.0, callback=stop_at(1))
    with pytest.warns(UserWarning, match="holds 3 configs, this invocation trains 4"):
        got = train(tmp_path, runs, two, checkpoint_every_s=0.0)
    assert got.timing["decoupled_st"]["chunk_size"] == 3  # the recorded chunks
    want = train(tmp_path / "clean", runs, one, chunk_size=3)
    assert [r["tau_f"] for r in got.runs] == [r["tau_f"] for r in want.runs]
    np.testing.assert_allclose(finals(got.runs), finals(want.runs), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_saved_state_of_other_runs_is_not_resumed(tmp_path):
    """A mid-chunk state with the right number of configs but other runs (chunks cut another
    way) restarts its chunk instead of training on with other runs' parameters."""
    runs, two = five_runs(), jax.devices()[:2]
    with pytest.raises(Stop):  # chunk 1 holds runs 3, 4 (and 2 padding configs)
        train(tmp_path, runs, two, chunk_size=3, checkpoint_every_s=0.0, callback=stop_at(1))
    sizes = ckpt_file(tmp_path, "chunk_sizes.json")
    sizes.write_text(json.dumps({"grid-decoupled_st": 2}))  # chunk 1 is now runs 2, 3
    with pytest.warns(UserWarning) as record:
        got = train(tmp_path, runs, two, checkpoint_every_s=0.0)
    said = " ".join(str(w.message) for w in record)
    assert "not chunk 0" in said and "saved for other runs" in said  # chunk 0's file, 1's state
    want = train(tmp_path / "clean", runs, two, chunk_size=2)
    assert got.runs == want.runs


# -- finished results are never replaced by another sweep ---------------------------------------


@pytest.mark.slow
def test_a_different_sweep_never_replaces_finished_results(tmp_path):
    first = small_sweep(estimators=("decoupled_st",))
    run_sweep(TASK, first, str(tmp_path), **QUIET)
    shutil.rmtree(tmp_path / "checkpoint")  # safe to delete once the sweep is done
    before = (tmp_path / "results.json").read_text()
    other = small_sweep(estimators=("softmax_ste",), tau_f=(0.25, 4.0))
    with pytest.raises(CheckpointError, match=f"{tmp_path}.*holds the results of a different"):
        run_sweep(TASK, other, str(tmp_path), **QUIET)
    assert (tmp_path / "results.json").read_text() == before
    assert not (tmp_path / "checkpoint").exists()  # nothing of the refused sweep written
    # The same sweep again (its checkpoint gone) retrains and writes the same results.
    assert run_sweep(TASK, first, str(tmp_path), **QUIET)["runs"] == json.loads(before)["runs"]
    # Asked to replace them, the other sweep leaves no figure of the first one behind.
    shutil.rmtree(tmp_path / "checkpoint")
    assert list(tmp_path.glob("heatmap_decoupled_st_*.png"))
    run_sweep(TASK, other, str(tmp_path), overwrite=True, **QUIET)
    assert {
        r["estimator"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]
    } == {"softmax_ste"}
    assert not list(tmp_path.glob("heatmap_*.png"))  # softmax_ste has no heatmap


def tiny_cli(monkeypatch):
    """The command line with the tiny synthetic task in place of the real sbn (no data)."""
    monkeypatch.setattr(cli.tasks, "make", lambda name, config=None: TASK)
    return ["sbn", "--smoke", "--estimators", "softmax_ste", "--tau-f", "1", "--seeds", "1",
            "--epochs", "1", "--eval-every", "10", "--no-progress"]  # fmt: skip


def test_the_command_line_refuses_to_replace_another_sweeps_results(capsys, tmp_path, monkeypatch):
    (tmp_path / "results.json").write_text(json.dumps({"task": "cae", "config": {}, "runs": []}))
    err = cli_error([*tiny_cli(monkeypatch), "--out", str(tmp_path)], capsys)
    assert "holds the results of a different sweep" in err and "--overwrite" in err
    assert cli.main([*tiny_cli(monkeypatch), "--out", str(tmp_path), "--overwrite"]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["task"] == "sbn"


# -- exact samples at every allowed temperature -------------------------------------------------

N_DRAWS = 200_000
NEXT_10 = float(np.nextafter(np.float32(10), np.float32(11)))  # 10 + 2^-20


def law_cases(bound):
    """(logits (C, 2), tau (C, 1), P(class 1) computed in float64) at the temperature bound."""
    if bound == E.TAU_MIN:
        rows = [[10.0, 10.0], [10.0, NEXT_10], [-3.0, -3.0 + 2e-6], [5e-7, 0.0], [0.0, 1.3e-6]]
    else:
        rows = [[0.0, 1e6], [-5e5, 5e5], [3e6, 0.0], [10.0, 10.0]]
    logits = np.array(rows, np.float32)
    gap = (logits[:, 1].astype(np.float64) - logits[:, 0]) / bound
    return logits, np.full((len(rows), 1), bound, np.float32), 1 / (1 + np.exp(-gap))


CATEGORICAL_SAMPLERS = {
    "decoupled_st": lambda k, l, t: E.decoupled_st(k, l, t, 1.0),
    "softmax_ste": E.softmax_ste,
    "identity_ste": E.identity_ste,
    "decoupled_reinmax": lambda k, l, t: E.decoupled_reinmax(k, l, t, 1.0),
    "sample_gumbel_max": E.sample_gumbel_max,
    "sample_inverse_cdf": E.sample_inverse_cdf,
    # Bernoulli forms: the logit of class 1 against class 0 is a = l1 - l0.
    "decoupled_st_bernoulli": lambda k, l, t: E.decoupled_st_bernoulli(
        k, l[:, 1] - l[:, 0], t[:, 0], 1.0
    ),
    "decoupled_reinmax_bernoulli": lambda k, l, t: E.decoupled_reinmax_bernoulli(
        k, l[:, 1] - l[:, 0], t[:, 0], 1.0
    ),
}


@pytest.mark.parametrize("bound", [E.TAU_MIN, E.TAU_MAX])
@pytest.mark.parametrize("name", CATEGORICAL_SAMPLERS)
def test_samples_follow_their_law_at_the_temperature_bounds(name, bound):
    """Frequencies of class 1 over 200,000 draws (a fixed key) within 5 standard errors of
    softmax(l / tau) at tau = 1e-6 and 1e6: ties, near-ties 2^-20 apart, and gaps around 0."""
    logits, tau, p1 = law_cases(bound)
    if "bernoulli" in name:  # a = l1 - l0 is exact only for the rows where it is small
        keep = np.abs(logits[:, 1] - logits[:, 0]) < 1
        logits, tau, p1 = logits[keep], tau[keep], p1[keep]
    fn = CATEGORICAL_SAMPLERS[name]
    keys = jax.random.split(jax.random.key(7), N_DRAWS)
    draw = jax.jit(jax.vmap(lambda k: fn(k, jnp.asarray(logits), jnp.asarray(tau))))
    z = np.asarray(draw(keys), np.float64)
    ones = z if z.ndim == 2 else z[..., 1]
    freq = ones.mean(axis=0)
    se = np.sqrt(np.maximum(p1 * (1 - p1), 1e-12) / N_DRAWS)
    assert np.all(np.abs(freq - p1) <= 5 * se + 1e-9), (freq, p1)


def test_float16_logits_at_their_temperature_bound_sample_their_law():
    l = jnp.array([[10.0, 10.0], [0.0, 1e-4], [-2.0, -2.0]], jnp.float16)
    gap = (np.asarray(l[:, 1], np.float64) - np.asarray(l[:, 0], np.float64)) / 1e-4
    p1 = 1 / (1 + np.exp(-gap))
    se = np.sqrt(p1 * (1 - p1) / N_DRAWS)
    keys = jax.random.split(jax.random.key(3), N_DRAWS)
    for fn in (E.sample_gumbel_max, E.sample_inverse_cdf):
        z = jax.jit(jax.vmap(fn, in_axes=(0, None, None)))(keys, l, E.TAU_MIN_FLOAT16)
        freq = np.asarray(z, np.float64).mean(axis=0)[:, 1]
        assert np.all(np.abs(freq - p1) <= 5 * se), (fn.__name__, freq, p1)


def test_sampling_at_ordinary_temperatures_is_unchanged():
    """Below |max(l) / tau| = 1024 the scores are the plain l / tau + g of earlier versions, so
    committed results reproduce: compare with that formula bit for bit."""
    rng = np.random.default_rng(0)
    l = jnp.asarray(rng.normal(size=(500, 16)) * 5, jnp.float32)
    for tau in (0.1, 1.0, 5.0):
        key = jax.random.key(1)
        g = jax.random.gumbel(key, l.shape, jnp.float32, mode="high")
        plain = jax.nn.one_hot(jnp.argmax(l / tau + g, axis=-1), 16)
        np.testing.assert_array_equal(E.sample_gumbel_max(key, l, tau), plain)
        np.testing.assert_array_equal(E.decoupled_st(key, l, tau, 1.0), plain)


# -- schedules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "exp"])
@pytest.mark.parametrize("tau0, tau1", [(100.0, 1e-6), (1e6, 1e-6), (1e-6, 1e6), (0.3, 0.7)])
def test_temperature_schedules_end_at_the_value_asked_for(kind, tau0, tau1):
    k = jnp.int32(schedules.TAU_SCHEDULES.index(kind))
    t0, t1 = jnp.float32(tau0), jnp.float32(tau1)
    total = 2000
    taus = np.asarray(
        jax.vmap(lambda t: schedules.temperature(k, t0, t1, t / total))(jnp.arange(total + 1))
    )
    assert taus[0] == np.float32(tau0) and taus[-1] == np.float32(tau1)
    assert np.all(taus >= np.float32(min(tau0, tau1)) * (1 - 1e-6))  # never 0 on the way
    # Through the training loop's own function, at the step of the final evaluation.
    hp = {"tau_schedule": k, "tau_f": t0, "tau_f_final": t1, "tau_b": t0, "tau_b_final": t1}
    tau_f, _ = temperatures(hp, jnp.int32(total), total)
    assert float(tau_f) == float(np.float32(tau1))


# -- experiments.report -------------------------------------------------------------------------

GOOD_RESULTS = {
    "task": "sbn",
    "dataset": "synthetic",
    "config": {"steps": 30, "steps_per_epoch": 20, "eval_every": 15, "sweep": {"seeds": 1}},
    "runs": [{"estimator": "decoupled_st", "tau_f": 1.0, "tau_b": 1.0, "final": {}}],
}


def report_error(capsys, path) -> str:
    code = report.main([str(path)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured
    assert captured.err.startswith("error:") and captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing folder", "does not exist"),
        ("a file", "is a file, not a folder"),
        ("no results.json", "holds no results.json"),
        ("truncated results.json", "results.json cannot be read"),
        ("not results", "is not a sweep's results file"),
        ("no runs", "holds no runs"),
        ("unknown task", "task 'sbnx', which this version does not know"),
        ("damaged timing.json", "timing.json cannot be read"),
    ],
)
def test_report_errors_are_one_line(capsys, tmp_path, case, message):
    out = tmp_path / "sweep"
    if case != "missing folder":
        out.mkdir()
    results = json.dumps(GOOD_RESULTS)
    files = {
        "a file": None,
        "truncated results.json": {"results.json": results[: len(results) // 2]},
        "not results": {"results.json": "[1, 2]"},
        "no runs": {"results.json": json.dumps({**GOOD_RESULTS, "runs": []})},
        "unknown task": {"results.json": json.dumps({**GOOD_RESULTS, "task": "sbnx"})},
        "damaged timing.json": {"results.json": results, "timing.json": '{"wall_s": 1'},
    }.get(case, {})
    if files is None:
        out.rmdir()
        out.write_text("x")
    for name, text in (files or {}).items():
        (out / name).write_text(text)
    assert message in report_error(capsys, out)


# -- task configs that leave nothing to train on or evaluate ------------------------------------


def test_a_validation_fraction_that_holds_out_nothing_is_refused():
    x, y = np.zeros((600, 3), np.float32), np.zeros(600, np.int32)
    config = common.SplitConfig(val_fraction=0.0001)
    with pytest.raises(ValueError, match=r"val_fraction=0.0001 holds out 0 of the 600 training"):
        common.make_splits(config, x, y, x, y)
    data = common.make_splits(common.SplitConfig(val_fraction=1 / 600), x, y, x, y)
    assert data["val_x"].shape[0] == 1


@pytest.mark.parametrize("batch_size", [401, 100_000])
def test_a_batch_larger_than_the_training_split_names_both(tmp_path, batch_size):
    task = type(TASK)(dataclasses.replace(TASK.config, batch_size=batch_size))
    with pytest.raises(ValueError, match=f"batch_size {batch_size:,} is larger than the training"
                       r" split \(400 examples"):  # fmt: skip
        run_sweep(task, small_sweep(), str(tmp_path), **QUIET)


@pytest.mark.parametrize("field", ["subset_seed", "val_seed"])
def test_a_negative_seed_names_its_field(capsys, tmp_path, field):
    err = cli_error(["sbn", "--out", str(tmp_path), "--smoke", "--set", f"{field}=-1"], capsys)
    assert f"{field} must be an int >= 0, got -1" in err


def test_every_command_line_error_exits_with_code_2(capsys, tmp_path):
    """Errors raised as SystemExit messages (e.g. a malformed --set) exit 2, like argparse's."""
    err = cli_error(["sbn", "--out", str(tmp_path), "--set", "no_such_field=1"], capsys)
    assert "expected KEY=VALUE" in err
    err = cli_error(["sbn", "--out", str(tmp_path), "--tau-grid", "x"], capsys)
    assert "--tau-grid 'x'" in err


def test_out_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(cli, "run_sweep", lambda task, sweep, out, *a, **k: seen.append(out))
    assert cli.main(["sbn", "--out=~/x", "--smoke"]) == 0
    assert seen == [str(tmp_path / "home" / "x")]


# -- a full disk --------------------------------------------------------------------------------


def test_a_full_disk_skips_mid_chunk_saves_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    sweep = small_sweep(checkpoint_every_s=0.0)
    want = run_sweep(TASK, sweep, str(tmp_path / "clean"), **QUIET)

    def full_disk(self, path, *args, **kwargs):  # as orbax fails: a partial temporary folder
        partial = Path(f"{path}.orbax-checkpoint-tmp-1234")
        partial.mkdir(parents=True)
        (partial / "d").write_bytes(b"x" * 100)
        raise ValueError(
            f'RESOURCE_EXHAUSTED: Error writing in OCDBT database at local file "{partial}": '
            "No space left on device [os_error_code='28']"
        )

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full_disk)
    out = tmp_path / "full"
    said = r"the disk holding .*checkpoint/\w+ is full .*segment-00001 .*not saved; the sweep"
    with pytest.warns(UserWarning, match=said):
        got = run_sweep(TASK, sweep, str(out), **QUIET)
    assert got["runs"] == want["runs"]
    assert not [p for p in (out / "checkpoint").rglob("*") if "state-" in p.name]

    # Too little room to begin with: orbax is not even called.
    monkeypatch.setattr(checkpoint, "free_bytes", lambda folder: 1000.0)
    out = tmp_path / "no-room"
    with pytest.warns(UserWarning, match=r"is full \(0.0 MiB free\): the mid-chunk state"):
        assert run_sweep(TASK, sweep, str(out), **QUIET)["runs"] == want["runs"]


def test_a_full_disk_when_writing_a_file_names_the_file_and_its_folder(
    capsys, tmp_path, monkeypatch
):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", no_space)
    fig = plotting.curves({"a": [{"curve": {"step": [1, 2], "x": [0.5, 0.4]}}]}, ("x",))
    with pytest.raises(DiskFullError, match=f"the disk holding {tmp_path} is full.*curves.png"):
        plotting.save(fig, str(tmp_path / "curves.png"))
    assert list(tmp_path.iterdir()) == []  # no temporary file left
    # On the command line: one line, exit code 2.
    out = tmp_path / "out"
    err = cli_error([*tiny_cli(monkeypatch), "--out", str(out)], capsys)
    assert "is full" in err and str(out) in err


# -- smaller contracts --------------------------------------------------------------------------


def test_check_temperatures_knows_the_float16_bound():
    E.check_temperatures(tau=np.array([1e-5]))
    with pytest.raises(ValueError, match=r"tau must hold numbers in \[0.0001"):
        E.check_temperatures(dtype=jnp.float16, tau=np.array([1e-5]))


def test_gumbel_rao_takes_numpy_integers_and_refuses_booleans():
    l = jnp.array([0.5, 0.2, -0.3])
    key = jax.random.key(0)
    np.testing.assert_array_equal(
        E.gumbel_rao(key, l, 1.0, k=np.int64(5)), E.gumbel_rao(key, l, 1.0, k=5)
    )
    with pytest.raises(ValueError, match="static integer k >= 1"):
        E.gumbel_rao(key, l, 1.0, k=True)
