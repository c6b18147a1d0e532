"""A grid split by estimator into parts, merged, is the grid: the committed sweeps, cut into
parts and merged again, render their committed summary.md byte for byte."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dst_jax import confirm, runner, tasks
from dst_jax.experiments import merge as merge_cli
from dst_jax.experiments import report
from dst_jax.sweep import merge
from dst_jax.sweep.report import build_report

ROOT = Path(__file__).resolve().parents[1]


def committed(name: str) -> dict:
    return json.loads((ROOT / "results" / name / "results.json").read_text())


def split(res: dict, first: int) -> tuple[dict, dict]:
    """The results cut after its `first` estimators, each part with its own runs and record."""
    order = list(dict.fromkeys(r["estimator"] for r in res["runs"]))
    parts = []
    for names in (order[:first], order[first:]):
        part = copy.deepcopy(res)
        part["runs"] = [r for r in res["runs"] if r["estimator"] in names]
        part["config"]["sweep"]["estimators"] = names
        if "confirmation" in part:
            rec = part["confirmation"]
            rec["configs"] = [c for c in rec["configs"] if c["estimator"] in names]
        parts.append(part)
    return parts[0], parts[1]


def summary_of(res: dict) -> str:
    task = confirm.task_from_results(res) if "confirmation" in res else tasks.make(res["task"])
    return runner.summary_text(task, build_report(task, res)) + "\n"


@pytest.mark.parametrize("name, first", [("sbn", 4), ("sbn-confirm", 2), ("cae", 1)])
def test_a_committed_sweep_cut_by_estimator_and_merged_renders_its_summary(name, first):
    res = committed(name)
    a, b = split(res, first)
    merged = merge.merge_results([("a", a), ("b", b)])
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731 (refinement runs come last)
    assert sorted(map(key, merged["runs"])) == sorted(map(key, res["runs"]))
    assert summary_of(merged) == (ROOT / "results" / name / "summary.md").read_text()
    assert summary_of(a) != summary_of(merged)  # the part alone lacks the other estimators
    if "confirmation" in res:
        assert merged["confirmation"]["configs"] == res["confirmation"]["configs"]


def test_parts_of_different_protocols_or_sharing_an_estimator_are_refused():
    a, b = split(committed("sbn"), 4)
    with pytest.raises(ValueError, match="decoupled_st is in both a and a2"):
        merge.merge_results([("a", a), ("a2", a)])
    cases = {
        "steps": lambda r: r["config"].update(steps=4000),
        "task config": lambda r: r["config"]["task"].update(hidden=[100, 100]),
        "eval_every": lambda r: r["config"].update(eval_every=250),
        "sweep.select_on": lambda r: r["config"]["sweep"].update(select_on="test"),
        "sweep.lrs": lambda r: r["config"]["sweep"].update(lrs=[0.01]),
        "sweep.optimizer": lambda r: r["config"]["sweep"].update(optimizer="sgd"),
        "seeds": lambda r: [run.update(seed=run["seed"] + 3) for run in r["runs"]],
        "confirmation": lambda r: r.update(confirmation={"from": "x"}),
        "train_metrics": lambda r: r.update(train_metrics="last_step"),
    }
    for setting, change in cases.items():
        other = copy.deepcopy(b)
        change(other)
        with pytest.raises(ValueError, match=f"b and a differ in {setting} "):
            merge.merge_results([("a", a), ("b", other)])
    # A part that records the default optimizer is the same protocol as one written before
    # the optimizer was recorded.
    explicit = copy.deepcopy(b)
    explicit["config"]["sweep"].update(optimizer="adam", momentum=None)
    assert merge.merge_results([("a", a), ("b", explicit)])["runs"]
    # A part written before a task config field existed was trained at the field's default.
    older = copy.deepcopy(b)
    default = older["config"]["task"].pop("eval_batch_size")
    assert merge.merge_results([("a", a), ("b", older)])["runs"]
    older["config"]["task"]["eval_batch_size"] = default + 1
    with pytest.raises(ValueError, match="b and a differ in task config "):
        merge.merge_results([("a", a), ("b", older)])
    with pytest.raises(ValueError, match="at least one"):
        merge.merge_results([])


def test_confirmations_of_different_screens_are_refused():
    a, b = split(committed("sbn-confirm"), 2)
    b["confirmation"]["screen_steps"] = 10800
    with pytest.raises(ValueError, match="differ in confirmation.screen_steps"):
        merge.merge_results([("a", a), ("b", b)])


def _write_part(folder: Path, res: dict, wall: float, command: str) -> None:
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(res))
    timing = {"machine": {"device": "cpu"}, "wall_s": wall, "command": command}
    (folder / "timing.json").write_text(json.dumps(timing))


def test_the_command_writes_the_whole_grids_folder(tmp_path, capsys):
    a, b = split(committed("sbn-confirm"), 2)
    _write_part(tmp_path / "a", a, 100.0, "python -m experiments.confirm A")
    _write_part(tmp_path / "b", b, 50.5, "python -m experiments.confirm B")
    out = tmp_path / "merged"
    argv = [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]
    assert merge_cli.main(argv) == 0
    assert (out / "summary.md").read_text() == (
        ROOT / "results" / "sbn-confirm" / "summary.md"
    ).read_text()
    assert (out / "curves.png").exists()
    timing = json.loads((out / "timing.json").read_text())
    assert timing["wall_s"] == 150.5 and [p["wall_s"] for p in timing["parts"]] == [100.0, 50.5]
    text = report.report(str(out))
    assert f"part `{tmp_path / 'b'}`: wall time 50.5 s; `python -m experiments.confirm B`" in text
    # Merging again into the same folder rewrites it; a folder of another sweep is refused.
    assert merge_cli.main(argv) == 0
    capsys.readouterr()
    assert merge_cli.main([*argv[:2], "--out", str(tmp_path / "a")]) == 2
    assert "is one of the parts" in capsys.readouterr().err
    _write_part(tmp_path / "c", a, 1.0, "x")
    (tmp_path / "c" / "timing.json").unlink()
    assert merge_cli.main([*argv[:2], "--out", str(tmp_path / "c")]) == 2
    assert "holds another sweep's results" in capsys.readouterr().err
    assert merge_cli.main([str(tmp_path / "a"), "--out", str(tmp_path / "d")]) == 2
    assert "at least two folders" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
