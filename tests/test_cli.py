"""`python -m experiments.run <task> --smoke` end to end, as the README runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_XLA_FLAGS

from dst_jax import estimators

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, data_dir: str) -> subprocess.CompletedProcess:
    # One device, as a user's plain CPU run (the test process itself forces four).
    env = {
        **os.environ,
        "DST_DATA_DIR": data_dir,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": TEST_XLA_FLAGS,
    }
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *args, "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def two_temperature() -> list[str]:
    """Registered estimators with a (tau_f, tau_b) grid: each gets its own heatmaps."""
    return [e.name for e in estimators.REGISTRY if e.n_temperatures == 2]


@pytest.mark.slow
def test_sbn_smoke_end_to_end(tmp_path, shared_data_dir):
    out = tmp_path / "sbn"
    proc = run_cli("sbn", "--out", str(out), "--smoke", data_dir=shared_data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Best config per estimator" in proc.stdout
    assert "s wall, of which compiling" in proc.stdout  # the final line
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "sbn" and res["dataset"] == "fashion_mnist"
    estimators = [r["estimator"] for r in res["runs"]]
    assert estimators.count("decoupled_st") == 4  # 2 x 2 (tau_f, tau_b), 1 seed
    assert {"softmax_ste", "st_gumbel_softmax", "identity_ste"} <= set(estimators)
    for r in res["runs"]:
        assert not r["diverged"]
        # 2,000 images less the 10% validation split: 18 batches x 10 epochs (under max_steps 200)
        assert r["curve"]["step"][-1] == 180
        # learning happened: well above the 10% of chance on Fashion-MNIST
        assert r["final"]["test_acc_det"] > 0.3, r
    assert {"reinmax", "decoupled_reinmax", "gumbel_rao"} <= set(estimators)
    figures = [f"heatmap_{e}_test_acc_{m}.png" for e in two_temperature() for m in ("stoch", "det")]
    for name in (*figures, "curves.png", "comparison.png", "profiles.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Rerunning the same command finds the finished checkpoint and trains nothing more.
    again = run_cli("sbn", "--out", str(out), "--smoke", data_dir=shared_data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["runs"] == res["runs"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, dataset, heatmaps, figures",
    [
        ("cae", "mnist", ("test_loss", "test_perplexity"), ("codes_decoupled_st.png",)),
        ("dlgn", "cifar10-jpeg-q75", ("test_acc", "gate_perplexity"), ("gate_hist.png",)),
    ],
)
def test_other_tasks_smoke_end_to_end(tmp_path, shared_data_dir, task, dataset, heatmaps, figures):
    out = tmp_path / task
    # The two-temperature estimators (one heatmap each) and a single-temperature one; the sbn
    # test above runs every estimator.
    estimators = "decoupled_st,decoupled_reinmax,softmax_ste"
    proc = run_cli(
        task, "--out", str(out), "--smoke", "--estimators", estimators, data_dir=shared_data_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == task and res["dataset"] == dataset
    assert [r["estimator"] for r in res["runs"]].count("decoupled_st") == 4
    assert all(not r["diverged"] for r in res["runs"])
    heatmaps = [f"heatmap_{e}_{m}.png" for e in two_temperature() for m in heatmaps]
    for name in (*heatmaps, *figures, "curves.png", "comparison.png", "profiles.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    if task == "dlgn":  # the gate usage is tabulated as well as drawn
        assert "`gate_hist` of the best config per estimator" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_bad_flag_gives_a_clear_error(tmp_path):
    proc = run_cli("sbn", "--out", str(tmp_path), "--tau-f", "0.1,abc", data_dir=str(tmp_path))
    assert proc.returncode == 2
    assert "--tau-f takes a comma-separated list of numbers" in proc.stderr


@pytest.mark.slow
def test_non_positive_temperature_is_refused(tmp_path, shared_data_dir):
    proc = run_cli(
        "sbn", "--out", str(tmp_path), "--smoke", "--tau-b", "0,1", data_dir=shared_data_dir
    )
    assert proc.returncode == 2
    assert "--tau-b needs positive finite values" in proc.stderr


def test_set_overrides_task_config_fields():
    from dst_jax.tasks.cae import Config
    from experiments.run import _override_task_config

    cfg = _override_task_config(Config(), ["beta=0", "train_subset=100", "encoder=128,64"])
    assert (cfg.beta, cfg.train_subset, cfg.encoder) == (0.0, 100, (128, 64))
    with pytest.raises(SystemExit, match="cannot read 'x'"):
        _override_task_config(Config(), ["beta=x"])
    with pytest.raises(SystemExit, match="KEY one of"):
        _override_task_config(Config(), ["no_such_field=1"])


def test_help_has_readable_metavars_every_set_field_and_an_example(capsys):
    import dataclasses
    import re

    from experiments import run

    with pytest.raises(SystemExit) as exit_:
        run.parser().parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "HP_" not in text and not re.search(r"--[a-z-]+ [A-Z_]+_[A-Z_]+\b(?!,)", text)
    assert "--lr-schedule NAME[,NAME...]" in text and "--tau-f TAU[,TAU...]" in text
    assert "python -m experiments.run sbn --out" in text  # the example
    for task in ("sbn", "cae", "dlgn"):
        config, _ = __import__(f"dst_jax.experiments.configs.{task}", fromlist=["x"]).get_config()
        section = text.split(f"  {task}:\n")[1]
        for f in dataclasses.fields(config):
            assert re.search(rf"^    {f.name}: \S.* = ", section, re.M), (task, f.name)
    assert "    beta: float = 1.0" in text and "    hidden: tuple[int, ...] = 200,200" in text


@pytest.mark.parametrize(
    "raised, line",
    [
        (SystemExit("--seeds 0: give at least 1"), "error: --seeds 0: give at least 1"),
        (SystemExit("error: already prefixed"), "error: already prefixed"),
        (ValueError("bad grid"), "error: bad grid"),
        (OSError("no such folder"), "error: no such folder"),
    ],
)
def test_every_command_reports_bad_input_as_one_error_line(capsys, raised, line):
    from dst_jax.experiments.errors import report_error

    assert report_error(raised) == 2
    assert capsys.readouterr().err == line + "\n"


def test_exits_without_a_message_pass_through():
    # argparse's own usage exits (status 2, already printed) and sys.exit(0) are not ours to word.
    from dst_jax.experiments.errors import report_error

    for code in (0, 2, None):
        with pytest.raises(SystemExit) as exc:
            report_error(SystemExit(code))
        assert exc.value.code == code
