"""The optimizer is a sweep setting: any optax optimizer by name, momentum, weight decay,
gradient clipping or the task's own; the default is exactly Adam, as before it was a setting."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dst_jax
from dst_jax.sweep.config import SweepConfig, build_optimizer

TINY = SweepConfig(
    estimators=("softmax_ste",), tau_f=(1.0,), seeds=1, epochs=1, max_steps=20, eval_every=10
)
QUIET = {"progress": False, "log": lambda *a: None}


def _updates(opt: optax.GradientTransformation, steps: int = 3):
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    state = opt.init(params)
    out = []
    for t in range(steps):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(p * (t + 1)) * 10.0, params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params["w"]))
    return np.stack(out)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, optax.adam(0.1)),
        ({"name": "sgd", "momentum": 0.9}, optax.sgd(0.1, momentum=0.9)),
        ({"name": "adamw", "weight_decay": 0.5}, optax.adamw(0.1, weight_decay=0.5)),
        (
            {"name": "sgd", "weight_decay": 0.5},
            optax.chain(optax.add_decayed_weights(0.5), optax.sgd(0.1)),
        ),
        (
            {"name": "radam", "clip_norm": 0.1},
            optax.chain(optax.clip_by_global_norm(0.1), optax.radam(0.1)),
        ),
    ],
)
def test_build_optimizer_is_the_optax_optimizer_it_names(options, expected):
    options = {"name": "adam", **options}
    got = _updates(build_optimizer(options.pop("name"), 0.1, **options))
    np.testing.assert_array_equal(got, _updates(expected))


def test_clipping_changes_the_steps():
    assert not np.array_equal(
        _updates(build_optimizer("sgd", 0.1, clip_norm=0.01)), _updates(optax.sgd(0.1))
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"optimizer": "nosuch"}, "not an optax optimizer"),
        ({"optimizer": "apply_updates"}, "not an optax optimizer"),
        ({"momentum": 0.9}, "takes no momentum"),
        ({"optimizer": "sgd", "clip_norm": 0.0}, "clip_norm must be positive"),
        ({"optimizer": "adamw", "weight_decay": -1.0}, "weight_decay must be a number >= 0"),
    ],
)
def test_bad_optimizer_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(**fields)


@pytest.mark.slow
def test_default_is_plain_adam_and_sgd_differs_and_is_recorded(tmp_path):
    from cli_task import make_adam_task, make_task

    def final_runs(task, sweep, name):
        res = dst_jax.run_sweep(task, sweep, str(tmp_path / name), **QUIET)
        return res, [{k: r[k] for k in ("final", "curve")} for r in res["runs"]]

    res, default = final_runs(make_task(), TINY, "default")
    assert res["config"]["sweep"]["optimizer"] == "adam"
    # The task's own optimizer, written as the code wrote it before it was a setting.
    _, own = final_runs(make_adam_task(), dataclasses.replace(TINY, optimizer="task"), "task")
    assert json.dumps(own) == json.dumps(default)  # bit for bit
    sgd = dataclasses.replace(TINY, optimizer="sgd", momentum=0.9)
    res, other = final_runs(make_task(), sgd, "sgd")
    assert other[0]["final"]["train_loss"] != default[0]["final"]["train_loss"]
    recorded = json.loads((tmp_path / "sgd" / "results.json").read_text())["config"]["sweep"]
    assert recorded["optimizer"] == "sgd" and recorded["momentum"] == 0.9


def test_the_task_optimizer_needs_a_task_that_has_one(tmp_path):
    from cli_task import make_task

    with pytest.raises(ValueError, match="make_optimizer"):
        dst_jax.run_sweep(make_task(), dataclasses.replace(TINY, optimizer="task"), str(tmp_path))
