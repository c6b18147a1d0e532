"""`dst_jax.gradients` as a package: its public names, its modules, the one best-cell rule, and
the protocol's training through the sweep engine's trainer."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dst_jax.gradients
from dst_jax import estimators as E
from dst_jax.gradients import claims, protocol, report
from dst_jax.sweep import results
from dst_jax.tasks import cae

# The public names of the single module the package replaced: each keeps working as
# `dst_jax.gradients.X` and `from dst_jax.gradients import X`.
EARLIER_NAMES = (
    "DEFAULT_TAUS",
    "METRICS",
    "REFERENCES",
    "all_codes",
    "claimed_moves",
    "code_index",
    "configs",
    "estimator_gradients",
    "exact_gradient",
    "expectation",
    "gradient_quality",
    "grid_quality",
    "log_q",
    "noise_ratio",
    "one_hot_codes",
    "quality",
    "tabulate",
    "tabulated",
)
MODULES = [m.name for m in pkgutil.iter_modules(dst_jax.gradients.__path__)]


def test_every_earlier_public_name_is_exported():
    assert set(EARLIER_NAMES) <= set(dst_jax.gradients.__all__)
    for name in EARLIER_NAMES:
        exec(f"from dst_jax.gradients import {name}", {})
        assert getattr(dst_jax.gradients, name) is not None, name
    # The package's names are its modules' objects, not copies.
    assert (
        dst_jax.gradients.exact_gradient
        is importlib.import_module("dst_jax.gradients.exact").exact_gradient
    )
    assert dst_jax.gradients.noise_ratio is claims.noise_ratio
    assert dst_jax.gradients.DEFAULT_TAUS == E.DEFAULT_TAUS


@pytest.mark.parametrize("name", MODULES)
def test_each_module_is_short_and_says_why(name):
    module = importlib.import_module(f"dst_jax.gradients.{name}")
    assert module.__file__ is not None
    assert len(Path(module.__file__).read_text().splitlines()) <= 450, name
    assert module.__doc__ and len(module.__doc__.strip()) > 40, name
    for public in getattr(module, "__all__", ()):
        assert hasattr(module, public), (name, public)


def test_the_package_holds_the_five_jobs():
    assert {"exact", "measure", "protocol", "claims", "report"} <= set(MODULES)


def test_entry_point_is_short_and_keeps_its_names():
    from dst_jax.experiments import gradients as command

    path = Path(command.__file__)
    assert len(path.read_text().splitlines()) <= 220
    # Library logic the command used to hold is the library's, re-exported under its old name.
    assert command.claim_check is claims.claim_check
    assert command.Settings is protocol.Settings
    assert command.best_cell is claims.best_cell


def test_best_cell_is_the_sweeps_rule_for_any_rank():
    grid_2d = np.array([[3.0, np.nan, 1.0], [0.5, 2.0, np.nan]])
    assert claims.best_cell(grid_2d, "bias") == results.best_cell(grid_2d, "min") == (1, 0)
    assert claims.best_cell(grid_2d, "cosine") == results.best_cell(grid_2d, "max") == (0, 0)
    axis = np.array([np.nan, 0.2, 0.1, 0.3])
    assert claims.best_cell(axis, "spread") == (2,)
    assert claims.best_cell(axis, "cosine") == (3,)
    assert claims.best_cell(np.array(0.7), "bias") == ()


def test_settings_reject_bad_values_naming_the_flag():
    with pytest.raises(ValueError, match="--train-steps"):
        protocol.Settings(train_steps=-1)
    with pytest.raises(ValueError, match="--score-samples"):
        protocol.Settings(score_samples=1)
    with pytest.raises(ValueError, match="--taus"):
        protocol.Settings(taus=(1.0, -2.0))


def tiny_task_and_data():
    config = cae.Config(encoder=(8,), decoder=(8,), latents=2, classes=3, batch_size=4)
    x = jax.random.uniform(jax.random.key(0), (40, 6))
    data = {
        "train_x": x[:32],
        "train_y": jnp.zeros(32, jnp.int32),
        "test_x": x[32:],
        "test_y": jnp.zeros(8, jnp.int32),
    }
    return cae.make_task(config), data


@pytest.mark.parametrize("steps", [30, 25])  # 10 windows of 3; 12 windows of 2 and 1 step
def test_training_is_the_engines_and_segments_do_not_change_it(steps):
    """The protocol trains through `sweep.train.make_fns` in segments of one window (to read
    the first and last windows' losses): the parameters equal those of one segment over every
    step, and the initial parameters those of the engine's init."""
    from dst_jax.sweep import grid
    from dst_jax.sweep.train import make_fns

    task, data = tiny_task_and_data()
    settings = protocol.Settings(train_steps=steps, lr=1e-2, prng="threefry2x32")
    p_init, p_trained, record = protocol.train(task, data, settings)
    assert record["steps"] == steps and record["loss_window"] == steps // 10
    assert np.isfinite(record["loss_first"]) and np.isfinite(record["loss_last"])
    assert np.isfinite(record["test"]["test_loss"])

    run = grid.Run(settings.train_estimator, 0.5, 1.0, settings.seed, settings.lr)
    hp = {k: jnp.asarray(v[0]) for k, v in grid.hparams_array([run], 1).items()}
    init, segment = make_fns(task, E.REGISTRY[settings.train_estimator], steps, prng="threefry2x32")
    state = jax.jit(init)(hp, data)
    p_engine_init = state.params
    state, metrics = jax.jit(segment, static_argnums=4)(state, hp, data, jnp.int32(0), steps)
    for got, want in zip(jax.tree.leaves(p_trained), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree.leaves(p_init), jax.tree.leaves(p_engine_init), strict=True):
        np.testing.assert_array_equal(got, want)
    moved = [
        np.abs(a - b).max()
        for a, b in zip(jax.tree.leaves(p_init), jax.tree.leaves(p_trained), strict=True)
    ]
    assert max(moved) > 0
    np.testing.assert_allclose(record["test"]["test_loss"], metrics["test_loss"], rtol=1e-5)


def test_no_training_keeps_the_initial_parameters():
    task, data = tiny_task_and_data()
    p_init, p_trained, record = protocol.train(task, data, protocol.Settings(train_steps=0))
    assert p_trained is p_init
    assert record["loss_first"] is None and record["loss_last"] is None
    json.dumps(record)  # the record is JSON as it stands


@pytest.mark.parametrize(
    "flags, named",
    [(["--train-steps", "-1"], "--train-steps"), (["--taus", "1,-2"], "--taus")],
)
def test_bad_settings_are_a_one_line_error(tmp_path, capsys, flags, named):
    from dst_jax.experiments import gradients as command

    assert command.main(["cae", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("folder", ["gradients-cae", "gradients-cae-300"])
def test_committed_gradient_summaries_are_rebuilt_from_their_records(folder):
    # Folders written by earlier versions lack newer settings and sections; the writer must still
    # reproduce what they hold, byte for byte.
    root = Path(__file__).resolve().parent.parent / "results" / folder
    doc = json.loads((root / "gradients.json").read_text())
    assert report.summary_markdown(doc) == (root / "summary.md").read_text()
