"""The command line's flags are generated from the config dataclasses: every documented command
still parses, `--help` lists every field, and a flag and `--set` set a field the same way."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from dst_jax.experiments import flags, run
from dst_jax.experiments.task_source import SMOKE_SWEEP, task_source
from dst_jax.sweep.config import SweepConfig

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"(?:python -m experiments\.run|dst-jax run)[ \t]+([^\n`|\"]*)")


def documented_commands() -> list[str]:
    """Every `experiments.run` command line written in the README, the docs, the committed
    results (summary.md, results.json, timing.json) and the experiment configs' docstrings;
    placeholders such as `<task>` or `{sbn,cae,dlgn}` left out."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "dst_jax" / "experiments" / "configs").glob("*.py"))
    for name in ("summary.md", "results.json", "timing.json"):
        files += sorted((ROOT / "results").glob(f"*/{name}"))
    found = []
    for path in files:
        text = path.read_text()
        if path.suffix == ".json":
            text = "\n".join(str(v) for v in _strings(json.loads(text)))
        text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
        for m in COMMAND.finditer(text):
            line = m.group(1).split(" #")[0].strip()
            if line and not re.search(r"[<{\[]", line) and not line.startswith("-"):
                found.append(line)
    return sorted(set(found))


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


COMMANDS = documented_commands()


def test_the_documents_hold_the_commands_this_test_checks():
    assert len(COMMANDS) >= 15, COMMANDS
    assert any("--tau-grid" in c for c in COMMANDS) and any("--set" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_documented_command_still_parses(command):
    argv = shlex.split(command)
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", "somewhere"]
    args, task, sweep = run.resolve(argv)
    if ":" in argv[0]:  # MODULE:FACTORY: a task of one's own, named by itself
        assert task.name and task.name != argv[0]
    else:
        assert task.name == argv[0]
    assert isinstance(sweep, SweepConfig)
    if "--seeds" in argv:
        assert sweep.seeds == int(argv[argv.index("--seeds") + 1])
    if "--max-steps" in argv:
        assert sweep.max_steps == int(argv[argv.index("--max-steps") + 1])


def test_help_lists_every_sweep_and_task_field_with_type_and_default(capsys):
    source = task_source("cae", smoke=False)
    text = run.parser(source).format_help()
    for f in dataclasses.fields(SweepConfig):
        spec = run.SWEEP_FLAGS.get(f.name)
        flag = {"axes": "--lr-schedule", "estimator_taus": "--tau-grid"}.get(f.name)
        flag = flag or (spec.flags[0] if spec and spec.flags else "--" + f.name.replace("_", "-"))
        assert flag in text, f.name
    for field in flags.fields_of(source.config, "task").values():
        flag = "--" + field.name.replace("_", "-")
        pattern = rf"{flag} .*?{re.escape(flags.type_name(field.hint))}, default "
        assert re.search(pattern + re.escape(flags.shown(field.default)), text, re.S), flag
    assert "float | None, default none" in text  # --clip-norm
    assert "int, default 3" in text  # --seeds: the cae protocol's 3 seeds


def test_a_flag_and_set_are_one_override_path():
    by_flag = run.resolve(
        ["cae", "--out", "x", "--beta", "0", "--lr", "0.01,0.1", "--encoder", "64,32"]
    )
    by_set = run.resolve(
        ["cae", "--out", "x", "--set", "beta=0", "--set", "lrs=0.01,0.1", "--set", "encoder=64,32"]
    )
    assert by_flag[1].config == by_set[1].config
    assert by_flag[1].config.beta == 0.0 and by_flag[1].config.encoder == (64, 32)
    assert by_flag[2] == by_set[2] and by_flag[2].lrs == (0.01, 0.1)
    # "none" is a value: it sets an optional field back to unset.
    _, _, sweep = run.resolve(["sbn", "--out", "x", "--smoke", "--max-steps", "none"])
    assert sweep.max_steps is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--optimizer", "nosuch"], "not an optax optimizer"),
        (["--momentum", "0.9"], "optimizer 'adam' takes no momentum"),
        (["--set", "lrs=x"], "cannot read 'x'"),
        (["--set", "nosuch=1"], "expected KEY=VALUE with KEY one of"),
        (["--beta", "x"], "argument --beta: beta takes float, got 'x'"),
    ],
)
def test_bad_values_are_one_line_errors(capsys, argv, message):
    try:
        code = run.main(["cae", "--out", "x", "--smoke", *argv])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err


def test_an_unknown_task_names_the_choices(capsys):
    assert run.main(["sbnx", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'sbnx'" in err and "MODULE:FACTORY" in err


def test_a_user_task_is_named_by_module_or_file():
    _, task, sweep = run.resolve(["cli_task:make_task", "--out", "x", "--smoke"])
    assert task.name == "teacher" and sweep == SMOKE_SWEEP
    path = str(ROOT / "tests" / "cli_task.py")
    _, task, sweep = run.resolve(
        [f"{path}:make_task", "--out", "x", "--hidden", "8", "--seeds", "2"]
    )
    assert task.name == "teacher" and task.config.hidden == (8,) and sweep.seeds == 2
    with pytest.raises(SystemExit, match="has no callable 'nope'"):
        run.resolve([f"{path}:nope", "--out", "x"])
    with pytest.raises(SystemExit, match="is not a file"):
        run.resolve(["no/such/file.py:make_task", "--out", "x"])
