"""Several hosts, simulated on one machine: two processes under `jax.distributed` (2 CPU devices
each, collectives over gloo) must train the same sweep as one process with 4 devices, byte for
byte, with only process 0 writing files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_XLA_FLAGS

ROOT = Path(__file__).resolve().parents[1]
SWEEP = [
    "sbn",
    "--smoke",
    "--estimators",
    "decoupled_st",
    "--tau-f",
    "0.1,1",
    "--tau-b",
    "0.5,1",
    "--seeds",
    "1",
    "--max-steps",
    "20",
    "--eval-every",
    "10",
    "--no-progress",
]


def _env(devices: int, data_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        "DST_DATA_DIR": data_dir,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out: Path, devices: int, data_dir: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.run", *SWEEP, "--out", str(out), *extra],
        cwd=ROOT,
        env=_env(devices, data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:  # a process whose peer died waits on it: never leave one behind
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-3000:]
    return outputs


@pytest.mark.slow
def test_two_processes_train_the_same_sweep_as_one(tmp_path, shared_data_dir):
    port = _free_port()
    multi = tmp_path / "two_processes"
    procs = [
        _start(
            multi,
            2,
            shared_data_dir,
            "--distributed",
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            str(i),
        )
        for i in range(2)
    ]
    logs = _finish(procs)
    assert "wrote: results.json" in logs[0]
    assert "wrote:" not in logs[1]  # only process 0 writes

    single = tmp_path / "one_process"
    _finish([_start(single, 4, shared_data_dir)])

    timing = json.loads((multi / "timing.json").read_text())
    assert timing["machine"]["n_processes"] == 2 and timing["machine"]["n_devices"] == 4
    # Same mesh size, same chunks: the results are the same bytes.
    assert (multi / "results.json").read_bytes() == (single / "results.json").read_bytes()
    res = json.loads((multi / "results.json").read_text())
    assert len(res["runs"]) == 4 and all(r["curve"]["step"] == [10, 20] for r in res["runs"])


def test_distributed_flags_are_checked():
    from experiments.run import init_distributed, parser

    with pytest.raises(SystemExit, match="need --distributed"):
        init_distributed(parser().parse_args(["sbn", "--out", "x", "--num-processes", "2"]))
    with pytest.raises(SystemExit, match=r"--process-id must lie in \[0, --num-processes\)"):
        init_distributed(
            parser().parse_args(
                ["sbn", "--out", "x", "--distributed", "--num-processes", "2", "--process-id", "2"]
            )
        )
