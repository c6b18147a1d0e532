"""`experiments.report DIR --tensorboard LOGDIR`: every run's curves and hyperparameters, read
back from the event files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from test_figures import synthetic_sweep

pytest.importorskip(
    "tensorboardX", reason="the optional extra 'tensorboard' (tensorboardX) is not installed"
)
from tensorboardX.proto import event_pb2, plugin_hparams_pb2  # noqa: E402


def events(folder: Path) -> list:
    """Every event of the event files in `folder` (the TFRecord framing: length, its CRC,
    the record, its CRC)."""
    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12 : i + 12 + n])
            out.append(event)
            i += 12 + n + 4
    return out


def test_every_run_is_written_with_its_curves_and_hyperparameters(tmp_path, capsys):
    from experiments import report

    out = synthetic_sweep(tmp_path, seeds=2)
    runs = json.loads((out / "results.json").read_text())["runs"]
    logdir = tmp_path / "tb"
    report.main([str(out), "--tensorboard", str(logdir)])
    assert f"wrote {len(runs)} runs to {logdir}" in capsys.readouterr().out
    folders = {p.parent for p in logdir.glob("**/events.out.tfevents.*")}
    assert len(folders) == len(runs)  # one folder per config and seed

    run = next(r for r in runs if r["estimator"] == "decoupled_st" and r["seed"] == 1)
    folder = logdir / "decoupled_st" / f"tau_f={run['tau_f']:g},tau_b={run['tau_b']:g},lr=0.001"
    evs = events(folder / "seed=1")
    scalars = {}
    hparams = None
    for ev in evs:
        for v in ev.summary.value:
            if v.tag == "_hparams_/session_start_info":
                content = v.metadata.plugin_data.content
                hparams = plugin_hparams_pb2.HParamsPluginData.FromString(content)
            elif v.HasField("simple_value"):
                scalars.setdefault(v.tag, []).append((ev.step, v.simple_value))
    # The curves, step by step (a split evaluated only at the end: one point).
    for metric in ("train_loss", "val_acc_stoch", "test_acc_stoch"):
        want = [
            (s, v)
            for s, v in zip(run["curve"]["step"], run["curve"][metric], strict=True)
            if v is not None
        ]
        got = scalars[metric]
        assert [s for s, _ in got] == [s for s, _ in want], metric
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), metric
    # The hyperparameters, for the HParams table and parallel-coordinates view.
    assert hparams is not None
    values = hparams.session_start_info.hparams
    assert values["estimator"].string_value == "decoupled_st"
    assert values["tau_f"].number_value == pytest.approx(run["tau_f"])
    assert values["tau_b"].number_value == pytest.approx(run["tau_b"])
    assert values["seed"].number_value == 1
    assert values["lr_schedule"].string_value == "constant"
