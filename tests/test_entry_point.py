"""The `dst-jax` command (`dst_jax.cli`, also `python -m dst_jax`) dispatches to the command
lines of `dst_jax.experiments`; `python -m experiments.<command>` stays an alias of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dst_jax import __version__, cli

ROOT = Path(__file__).resolve().parents[1]


def test_no_command_prints_the_commands_and_exits_2(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in ("run", "report", "gradients"))


def test_unknown_command_is_one_line_and_exit_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown command 'frobnicate'") and "\n" not in err


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dst-jax {__version__}"


def test_report_dispatches_to_the_report_command(tmp_path, capsys, monkeypatch):
    import dst_jax.experiments.report as report

    seen = []
    monkeypatch.setattr(report, "report", lambda *args: seen.append(args) or "REPORT")
    assert cli.main(["report", str(tmp_path), "--select-on", "test"]) == 0
    assert seen and seen[0][:2] == (str(tmp_path), "test")
    assert capsys.readouterr().out.strip() == "REPORT"


def test_run_refuses_bad_input_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli.main(["run", "sbn", "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a file, not a folder" in err


def test_checkout_aliases_are_the_package_modules():
    import dst_jax.experiments.gradients
    import dst_jax.experiments.report
    import dst_jax.experiments.run
    from experiments import gradients, report, run

    assert run is dst_jax.experiments.run
    assert report is dst_jax.experiments.report
    assert gradients is dst_jax.experiments.gradients


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv", [["-m", "dst_jax", "run", "--help"], ["-m", "experiments.run", "--help"]]
)
def test_python_dash_m_runs_the_command(argv):
    out = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--out" in out.stdout and "--smoke" in out.stdout
