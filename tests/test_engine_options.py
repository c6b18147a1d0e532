"""The engine takes one options record, with one default for each setting."""

from __future__ import annotations

import dataclasses
import inspect

import jax
import pytest
from test_sweep import SWEEP, TASK

from dst_jax.sweep import grid, halving
from dst_jax.sweep.config import TEST_AT, EngineOptions, SweepConfig
from dst_jax.sweep.engine import train_runs
from dst_jax.sweep.train import make_fns


def test_test_at_has_one_default_everywhere():
    assert TEST_AT[0] == "end"
    assert SweepConfig().test_at == "end"
    assert EngineOptions(steps=1, eval_every=1).test_at == "end"
    assert inspect.signature(make_fns).parameters["test_at"].default == "end"


def test_options_come_from_the_sweep_config():
    sweep = dataclasses.replace(SWEEP, chunk_size=4, prng="rbg", optimizer="sgd", momentum=0.5)
    opts = EngineOptions.of_sweep(sweep, steps=30, eval_every=15, tag="refine1")
    assert (opts.chunk_size, opts.prng, opts.test_at, opts.tag) == (4, "rbg", "every", "refine1")
    assert dict(opts.optimizer) == {
        "optimizer": "sgd",
        "momentum": 0.5,
        "weight_decay": None,
        "clip_norm": None,
    }
    assert opts.program_options()["optimizer_options"] == opts.optimizer
    hash(opts.optimizer)  # part of the compiled program's cache key
    with pytest.raises(ValueError, match="must be positive"):
        EngineOptions(steps=0, eval_every=10)


def test_an_options_record_and_keywords_train_the_same():
    data, _ = TASK.load_data(None)
    runs = grid.expand(dataclasses.replace(SWEEP, estimators=("softmax_ste",), seeds=1), TASK)
    one = jax.devices()[:1]
    opts = EngineOptions(steps=30, eval_every=15, devices=one, test_at="every")
    by_record = train_runs(TASK, data, runs, opts)
    by_keywords = train_runs(
        TASK, data, runs, steps=30, eval_every=15, devices=one, test_at="every"
    )
    assert by_record.runs == by_keywords.runs
    # Halving takes the same record (a single rung pair keeps every cell of two).
    halved = halving.train_halving(
        TASK, data, runs, opts, rungs=[15, 30], eta=2, select="val_acc_stoch", direction="max"
    )
    assert [r["stopped"] for r in halved.runs].count(False) == 1
    kept = next(r for r in halved.runs if not r["stopped"])
    same = by_record.runs[halved.runs.index(kept)]
    assert kept["final"] == same["final"] and kept["curve"] == same["curve"]
