"""The Task contract: `loss(params, key, batch, hp)` and `evaluate(params, key, batch, hp)`,
unlabelled data, the names the engine refuses, and what a `train_*` metric reports."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dst_jax import estimators as E
from dst_jax.sweep import grid, train
from dst_jax.sweep.engine import train_runs
from dst_jax.sweep.grid import Run
from dst_jax.tasks import cae, common, dlgn, sbn
from dst_jax.tasks.base import Batch, Hparams, TaskBase, fixed_arrays, split_batch


@dataclasses.dataclass(frozen=True)
class _Config:
    batch_size: int = 10


@dataclasses.dataclass(frozen=True)
class Regression(TaskBase):
    """A user's task in a few lines: one categorical unit picks a scale for the inputs; no
    labels (the target is the input). Its metrics are overridable to test the engine's rules."""

    config: _Config = _Config()
    loss_metrics: tuple[str, ...] = ("tau_f",)
    param_names: tuple[str, ...] = ()

    name = "regression"
    headline_metric = "mse"
    metric_directions = {"mse": "min"}

    def load_data(self, data_dir):
        x = np.linspace(0, 1, 60, dtype=np.float32)[:, None]
        return {"train_x": x[:40], "val_x": x[40:50], "test_x": x[50:]}, {"dataset": "line"}

    def init_params(self, key, data):
        return {"logits": jnp.zeros((3,)), "w": jnp.zeros(())}

    def _mse(self, params, key, batch, hp):
        assert batch.y is None and batch.fixed == {}
        z = hp.sampler("categorical")(key, params["logits"])
        scale = z @ jnp.array([0.5, 1.0, 2.0])
        return jnp.mean((params["w"] * scale - batch.x) ** 2)

    def loss(self, params, key, batch, hp):
        mse = self._mse(params, key, batch, hp)
        return mse, {name: hp.tau_f for name in self.loss_metrics}

    def evaluate(self, params, key, batch, hp):
        return {"mse": self._mse(params, key, batch, hp)}

    def param_metrics(self, params):
        return {name: params["w"] for name in self.param_names}


RUN = Run("decoupled_st", 1.0, 1.0, 0, 0.1)


def _train(task, runs=(RUN,), steps=20, eval_every=10):
    data, _ = task.load_data(None)
    return train_runs(
        task, data, list(runs), steps=steps, eval_every=eval_every, devices=jax.devices()[:1]
    )


def test_batch_and_hparams_are_pytrees_with_a_static_estimator():
    batch = Batch(jnp.ones((2, 3)), None, {"table": jnp.arange(4)})
    hp = Hparams(E.REGISTRY["decoupled_st"], jnp.float32(0.5), jnp.float32(2.0))
    assert len(jax.tree.leaves(batch)) == 2 and len(jax.tree.leaves(hp)) == 2
    traces = []

    @jax.jit
    def f(batch, hp):
        traces.append(hp.estimator.name)
        return jnp.sum(hp.sampler()(jax.random.key(0), batch.x)) * hp.tau_f

    assert float(f(batch, hp)) == pytest.approx(2 * 0.5)  # one one-hot per row
    f(batch, dataclasses.replace(hp, tau_f=jnp.float32(3.0)))  # same program: tau is traced
    assert traces == ["decoupled_st"]
    # The sampler is the registry's uniform form at these temperatures.
    l = jax.random.normal(jax.random.key(1), (4, 5))
    want = E.REGISTRY["decoupled_st"].uniform()(jax.random.key(2), l, 0.5, 2.0)
    np.testing.assert_array_equal(hp.sampler()(jax.random.key(2), l), want)


def test_split_batch_and_fixed_arrays():
    data = {"train_x": 1, "train_y": 2, "test_x": 3, "wiring_in": 4, "val_x": 5}
    assert fixed_arrays(data) == {"wiring_in": 4}
    b = split_batch(data, "test")
    assert (b.x, b.y, b.fixed) == (3, None, {"wiring_in": 4})


def test_one_class_shape_for_the_built_in_tasks():
    for mod in (sbn, cae, dlgn):
        task = mod.make_task()
        assert isinstance(task, TaskBase) and dataclasses.is_dataclass(task)
        assert task == mod.make_task(mod.Config()) and hash(task) == hash(mod.make_task())
        with pytest.raises(dataclasses.FrozenInstanceError):
            task.config = None  # type: ignore[misc]


def test_splits_without_labels():
    x = np.arange(100, dtype=np.float32)[:, None]
    config = common.SplitConfig(val_fraction=0.2, train_subset=50, test_subset=10)
    data = common.make_splits(config, x, None, x[:30], None)
    assert sorted(data) == ["test_x", "train_x", "val_x"]
    assert common.split_sizes(data) == {"train": 40, "test": 10, "val": 10}
    # The same rows as with labels: labels only ride along.
    labelled = common.make_splits(config, x, x[:, 0].astype(int), x[:30], x[:30, 0].astype(int))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(labelled[f"{split}_x"], data[f"{split}_x"])
        np.testing.assert_array_equal(labelled[f"{split}_y"], data[f"{split}_x"][:, 0])


def test_unlabelled_data_trains_and_evaluates():
    out = _train(Regression())
    final = out.runs[0]["final"]
    assert {"train_loss", "val_mse", "test_mse"} <= set(final)
    assert all(np.isfinite(final[k]) for k in ("train_loss", "val_mse", "test_mse"))
    assert out.runs[0]["curve"]["step"] == [10, 20]
    # Trained: the scale times w moved towards the inputs' mean from w = 0.
    assert final["test_mse"] < float(np.mean(np.linspace(0, 1, 60)[50:] ** 2))


def test_a_classifier_without_labels_says_what_is_missing():
    task = sbn.make_task(sbn.Config(hidden=(4,)))
    params = task.init_params(jax.random.key(0), {"train_x": jnp.zeros((2, 3))})
    hp = Hparams(E.REGISTRY["decoupled_st"], 1.0, 1.0)
    with pytest.raises(ValueError, match="sbn.*need labels"):
        task.loss(params, jax.random.key(0), Batch(jnp.zeros((2, 3))), hp)


@pytest.mark.parametrize(
    "task, method, metric",
    [
        (Regression(loss_metrics=("loss",)), "loss", "loss"),
        (Regression(param_names=("test_mse",)), "param_metrics", "test_mse"),
        (Regression(param_names=("step",)), "param_metrics", "step"),
    ],
)
def test_a_metric_that_clashes_with_an_engine_name_is_refused(task, method, metric):
    with pytest.raises(ValueError, match=f"'regression': {method} .* named '{metric}'"):
        _train(task)


def test_train_metrics_are_the_value_at_the_evaluation_step():
    """A metric of `loss` that moves every step (the annealed tau_f): its curve holds the value
    at each evaluation's step, and `final` the one at the last step, not an interval mean."""
    run = Run("decoupled_st", 2.0, 1.0, 0, 0.1, tau_schedule="linear", tau_f_final=0.5)
    out = _train(Regression(), [run], steps=20, eval_every=10)
    hp = {"tau_schedule": 1, "tau_f": 2.0, "tau_f_final": 0.5, "tau_b": 1.0, "tau_b_final": 1.0}
    hp = {k: jnp.asarray(v) for k, v in hp.items()}  # 1: the linear schedule
    # The last step of each interval, 9 and 19 (an interval's mean would be at 4.5 and 14.5).
    want = [float(train.temperatures(hp, jnp.asarray(t), 20)[0]) for t in (9, 19)]
    np.testing.assert_allclose(out.runs[0]["curve"]["train_tau_f"], want, rtol=1e-6)
    assert out.runs[0]["final"]["train_tau_f"] == pytest.approx(want[1], rel=1e-6)


def test_train_metrics_can_be_the_interval_mean():
    """`make_fns(train_metrics="mean")`: a segment's train metrics are the mean over its steps
    (the annealed tau_f of steps 0..9), for a smoother curve than one minibatch."""
    task = Regression()
    data = jax.tree.map(jnp.asarray, task.load_data(None)[0])
    run = Run("decoupled_st", 2.0, 1.0, 0, 0.1, tau_schedule="linear", tau_f_final=0.5)
    hp = {k: jnp.asarray(v[0]) for k, v in grid.hparams_array([run], 1).items()}
    init, segment = train.make_fns(task, E.REGISTRY["decoupled_st"], 20, train_metrics="mean")
    _, metrics = segment(init(hp, data), hp, data, jnp.int32(0), 10)
    taus = [float(train.temperatures(hp, jnp.asarray(t), 20)[0]) for t in range(10)]
    assert float(metrics["train_tau_f"]) == pytest.approx(np.mean(taus), rel=1e-6)
    with pytest.raises(ValueError, match="train_metrics must be 'last' or 'mean'"):
        train.make_fns(task, E.REGISTRY["decoupled_st"], 20, train_metrics="median")
