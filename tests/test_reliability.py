"""Bad input, damaged files and interruptions: a clear one-line error or a correct result, never
wrong numbers in silence. docs/RELIABILITY.md lists each case with the test that covers it."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import TEST_XLA_FLAGS
from test_sweep import SWEEP, TASK

from dst_jax.runner import run_sweep
from dst_jax.sweep import grid
from dst_jax.sweep.checkpoint import CheckpointError
from experiments import run as cli

QUIET = {"progress": False, "log": lambda *a: None}
ROOT = Path(__file__).resolve().parents[1]


def cli_error(argv, capsys) -> str:
    """Runs the command line in-process; returns its one-line error (exit code 2)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 or (isinstance(code, str) and code.startswith("error:")), (code, err)
    text = err if code == 2 else code
    assert "Traceback" not in text
    return text


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
    err = cli_error(["sbn", "--out", out, "--smoke", "--data-dir", str(empty)], capsys)
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
    path.write_text(json.dumps(json.loads(good)[:1]))
    with pytest.raises(CheckpointError, match=f"{path.name} should hold 2 runs but holds 1"):
        run_sweep(TASK, small_sweep(), str(tmp_path), **QUIET)
    # Deleting it, as the message says, retrains that chunk and gives the same results.
    before = json.loads((tmp_path / "results.json").read_text())
    path.unlink()
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
