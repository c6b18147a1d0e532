"""`dst_jax.provenance`: one record of machine, versions, commit and time, the same in every output
file, and the one JSON rule."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from dst_jax import provenance, runner
from dst_jax.sweep import results

ROOT = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"machine", "versions", "git_commit", "git_dirty", "created_utc"}
# The machine keys that timing.json files written before this module already hold.
EARLIER_MACHINE_KEYS = {
    "platform",
    "device",
    "n_devices",
    "n_processes",
    "host_cpus",
    "python",
    "jax",
}


def test_record_holds_machine_versions_commit_and_time():
    rec = provenance.record()
    assert set(rec) == RECORD_KEYS
    assert EARLIER_MACHINE_KEYS <= set(rec["machine"])
    assert rec["machine"]["n_devices"] >= 1
    for pkg in ("python", "dst_jax", "jax", "jaxlib", "numpy", "optax", "flax"):
        assert isinstance(rec["versions"][pkg], str), pkg
    when = datetime.datetime.fromisoformat(rec["created_utc"])
    assert when.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.UTC) - when) < datetime.timedelta(minutes=5)
    # Strict JSON as it stands.
    json.dumps(rec, allow_nan=False)


def test_git_commit_of_this_checkout():
    commit = provenance.git_commit()
    if (ROOT / ".git").exists() and shutil.which("git"):
        assert commit is not None and re.fullmatch(r"[0-9a-f]{40}", commit)
        assert isinstance(provenance.git_dirty(), bool)
    else:
        assert commit is None and provenance.git_dirty() is None


def test_runner_machine_info_is_the_provenance_one():
    assert runner.machine_info is provenance.machine_info


def test_json_safe_is_strict_json():
    value = {
        1: (np.float32(1.5), np.int64(3), np.bool_(True)),
        "nan": float("nan"),
        "inf": np.array([1.0, np.inf, -np.inf]),
        "jax": jnp.array([[0.25, jnp.nan]]),
        "nested": [{"x": np.float64("nan")}, "text", None],
    }
    got = provenance.json_safe(value)
    assert got == {
        "1": [1.5, 3, True],
        "nan": None,
        "inf": [1.0, None, None],
        "jax": [[0.25, None]],
        "nested": [{"x": None}, "text", None],
    }
    assert type(got["1"][1]) is int and type(got["1"][2]) is bool
    json.dumps(got, allow_nan=False)


def test_sweep_results_use_the_same_rule():
    assert results.json_number(np.float32(np.nan)) is None
    assert results.json_number(jnp.int32(4)) == 4
    assert results.json_value(jnp.array([1.0, np.inf])) == [1.0, None]
    assert results.json_value(np.float32(0.5)) == 0.5


def test_benchmark_documents_carry_the_record():
    from benchmarks import common

    doc = common.json_document({"task": "sbn", "rate": np.float64(np.nan)})
    assert RECORD_KEYS <= set(doc)
    assert doc["task"] == "sbn" and doc["rate"] is None
    json.dumps(doc, allow_nan=False)


@pytest.mark.slow
def test_a_sweeps_timing_json_holds_the_record(tmp_path):
    import dataclasses

    from test_sweep import SWEEP, TASK

    sweep = dataclasses.replace(SWEEP, estimators=("decoupled_st",), seeds=1)
    runner.run_sweep(TASK, sweep, str(tmp_path), progress=False, log=lambda *a: None)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert RECORD_KEYS <= set(timing)
    assert EARLIER_MACHINE_KEYS <= set(timing["machine"])
    assert timing["versions"]["jax"] == timing["machine"]["jax"]
