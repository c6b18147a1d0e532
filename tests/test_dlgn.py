"""The `dlgn` task on small synthetic data: exact discretised evaluation, metrics, training."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dst_jax import estimators as E
from dst_jax import logic, tasks
from dst_jax.sweep import Run, grid, train_runs
from dst_jax.tasks import dlgn
from dst_jax.tasks.base import Batch, Hparams, fixed_arrays, split_batch

# The 16 gates on Boolean numpy arrays, written from their names (independent of the 16x4 table).
NP_GATES = {
    "FALSE": lambda a, b: np.zeros_like(a),
    "AND": lambda a, b: a & b,
    "A AND NOT B": lambda a, b: a & ~b,
    "A": lambda a, b: a,
    "NOT A AND B": lambda a, b: ~a & b,
    "B": lambda a, b: b,
    "XOR": lambda a, b: a ^ b,
    "OR": lambda a, b: a | b,
    "NOR": lambda a, b: ~(a | b),
    "XNOR": lambda a, b: ~(a ^ b),
    "NOT B": lambda a, b: ~b,
    "B IMPLIES A": lambda a, b: ~b | a,
    "NOT A": lambda a, b: ~a,
    "A IMPLIES B": lambda a, b: ~a | b,
    "NAND": lambda a, b: ~(a & b),
    "TRUE": lambda a, b: np.ones_like(a),
}


def numpy_class_counts(params, data, x_BxD, n_classes):
    """Per-class counts of 1-outputs of the discretised network, evaluated gate by gate."""
    h = x_BxD.astype(bool)
    for layer, logits in enumerate(params["gate_logits"]):
        wa, wb = dlgn.layer_wiring(data, layer)
        gates = np.asarray(logits).argmax(-1)
        out = np.empty((h.shape[0], gates.size), bool)
        for j, g in enumerate(gates):
            out[:, j] = NP_GATES[logic.GATE_NAMES[g]](h[:, wa[j]], h[:, wb[j]])
        h = out
    return h.reshape(h.shape[0], n_classes, -1).sum(-1)


def synthetic(n, d, seed):
    """Random bits; the label is the majority of the first three (2 classes)."""
    x = np.random.default_rng(seed).integers(0, 2, (n, d)).astype(np.uint8)
    return x, (x[:, :3].sum(1) >= 2).astype(np.int32)


def make(config, n_train=256, n_test=70, d=48):
    task = dlgn.make_task(config)
    data = dlgn.build_data(config, *synthetic(n_train, d, 0), *synthetic(n_test, d, 1))
    return task, jax.tree.map(jnp.asarray, data)


# "random" wiring: some neurons read one input twice, an edge case for the exact evaluation.
SMALL = dlgn.Config(
    layers=3,
    width=40,
    n_classes=4,
    group_sum_tau=2.0,
    batch_size=32,
    eval_batch_size=32,
    wiring="random",
)


def args(x, y, data, estimator, tau_f, tau_b):
    """`Task.loss`'s and `Task.evaluate`'s (batch, hp) from the arrays and the estimator."""
    return Batch(x, y, fixed_arrays(data)), Hparams(estimator, tau_f, tau_b)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _evaluate(task, params, data, estimator, tau_f, tau_b):
    batch = split_batch(data, "test")
    metrics = task.evaluate(params, jax.random.key(9), batch, Hparams(estimator, tau_f, tau_b))
    return {**metrics, **task.param_metrics(params)}


def evaluate(task, params, data, name, tau_f=1.0, tau_b=1.0):
    """Test-split and parameter metrics of one model with the registered estimator `name`."""
    return _evaluate(task, params, data, E.REGISTRY[name], tau_f, tau_b)


@pytest.fixture(scope="module")
def small():
    # One task object for the whole module, so the jitted `evaluate` compiles once per estimator.
    return make(SMALL)


def test_discretised_evaluation_equals_numpy_gate_by_gate(small):
    task, data = small
    config = SMALL
    params = task.init_params(jax.random.key(0), data)
    x, y = np.asarray(data["test_x"]), np.asarray(data["test_y"])
    counts = numpy_class_counts(params, data, x, config.n_classes)

    hard = [logic.argmax_coefficients(lg) for lg in params["gate_logits"]]
    np.testing.assert_allclose(
        jax.jit(task.forward)(hard, data["test_x"], data),
        counts / config.group_sum_tau,
        rtol=1e-6,
    )
    # The first layer alone (the path without the scan over hidden layers).
    first = numpy_class_counts({"gate_logits": params["gate_logits"][:1]}, data, x, 4)
    one_layer = {k: v[:0] if k.endswith("hidden") else v for k, v in data.items()}
    np.testing.assert_allclose(
        jax.jit(task.forward)(hard[:1], data["test_x"], one_layer), first / 2.0, rtol=1e-6
    )
    with pytest.raises(ValueError, match="same Config"):
        task.forward(hard[:2], data["test_x"], data)
    # 70 test examples = 2 slices of 32 + a tail of 6.
    metrics = evaluate(task, params, data, "decoupled_st")
    assert float(metrics["acc"]) == pytest.approx(np.mean(counts.argmax(-1) == y), abs=1e-7)


def test_gate_histogram_and_perplexity(small):
    task, data = small
    n = SMALL.layers * SMALL.width  # 120 neurons
    uniform = np.tile(np.arange(16), n // 16 + 1)[:n]
    uniform[-(n % 16) :] = 0  # 7 full rounds of 16 gates; the rest all FALSE
    for gates in (np.full(n, 3), uniform):
        logits = 5.0 * jax.nn.one_hot(gates.reshape(SMALL.layers, SMALL.width), 16)
        m = evaluate(task, {"gate_logits": list(logits)}, data, "softmax_relaxation")
        hist = np.bincount(gates, minlength=16) / n
        np.testing.assert_allclose(m["gate_hist"], hist, atol=1e-7)
        entropy = -np.sum(hist[hist > 0] * np.log(hist[hist > 0]))
        assert float(m["gate_perplexity"]) == pytest.approx(np.exp(entropy), rel=1e-5)
    assert float(m["gate_perplexity"]) > 14  # nearly even use of the 16 gates


def test_train_mode_accuracy(small):
    task, data = small
    gates = np.random.default_rng(0).integers(0, 16, (SMALL.layers, SMALL.width))
    # Clear margins: at tau_f = 1e-3 the estimator's sample is the argmax gate.
    params = {"gate_logits": list(5.0 * jax.nn.one_hot(gates, 16))}
    m = evaluate(task, params, data, "decoupled_st", 1e-3, 1.0)
    assert float(m["acc_train_mode"]) == float(m["acc"])
    # The relaxation's train mode is the soft network.
    params = task.init_params(jax.random.key(1), data)
    probs = [jax.nn.softmax(lg) for lg in params["gate_logits"]]
    soft = jax.jit(task.forward)([logic.gate_coefficients(p) for p in probs], data["test_x"], data)
    m = evaluate(task, params, data, "softmax_relaxation")
    expected = np.mean(np.asarray(soft).argmax(-1) == np.asarray(data["test_y"]))
    assert float(m["acc_train_mode"]) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("per_example", [False, True])
def test_binary_inputs_read_packed_equal_float_inputs(per_example):
    """The task's uint8 bits enter the first layer bit-packed; float inputs of the same values
    take the float path: the same loss, and gradients equal up to float rounding."""
    config = dlgn.Config(**{**SMALL.__dict__, "per_example_samples": per_example})
    task, data = make(config)
    params = task.init_params(jax.random.key(0), data)
    x, y = data["train_x"][:40], data["train_y"][:40]
    assert x.dtype == jnp.uint8
    loss_and_grad = jax.jit(jax.value_and_grad(task.loss, has_aux=True))
    est = E.REGISTRY["decoupled_st"]
    key = jax.random.key(1)
    (l_bits, _), g_bits = loss_and_grad(params, key, *args(x, y, data, est, 0.5, 2.0))
    xf = x.astype(jnp.float32)
    (l_float, _), g_float = loss_and_grad(
        params, jax.random.key(1), *args(xf, y, data, est, 0.5, 2.0)
    )
    assert float(l_bits) == pytest.approx(float(l_float), rel=1e-6)
    for a, b in zip(g_bits["gate_logits"], g_float["gate_logits"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("per_example", [False, True])
def test_loss_gradient_reaches_every_layer(per_example):
    config = dlgn.Config(**{**SMALL.__dict__, "per_example_samples": per_example})
    task, data = make(config)
    params = task.init_params(jax.random.key(0), data)
    x, y = data["train_x"][:16], data["train_y"][:16]
    loss_and_grad = jax.jit(jax.value_and_grad(task.loss, has_aux=True))
    (loss, aux), grads = loss_and_grad(
        params, jax.random.key(1), *args(x, y, data, E.REGISTRY["decoupled_st"], 0.5, 2.0)
    )
    assert np.isfinite(float(loss)) and 0 <= float(aux["acc"]) <= 1
    for g in grads["gate_logits"]:
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_per_example_samples_differ_between_examples(small):
    task, _ = small
    logits = jnp.zeros((SMALL.width, 16))  # uniform: every example draws its own gates
    sample = jax.jit(task.gate_coefficients, static_argnums=(2, 5))
    c = sample(jax.random.key(0), logits, E.REGISTRY["decoupled_st"], 1.0, 1.0, 8)
    assert c.shape == (SMALL.width, 8, 4)
    assert len({np.asarray(c[:, i]).tobytes() for i in range(8)}) == 8


def test_build_data_wiring_and_subsets():
    config = dlgn.Config(**{**SMALL.__dict__, "train_subset": 100, "test_subset": 50})
    x, _ = synthetic(256, 48, 0)
    y = np.repeat(np.arange(4), 64)  # sorted by class, like the CIFAR-10 JPEG copy
    data = dlgn.build_data(config, x, y, x, y)
    # 100 training examples, of which 10% are held out for validation.
    assert data["train_x"].shape == (90, 48) and data["val_y"].shape == (10,)
    assert data["test_y"].shape == (50,)
    # The subsets are seeded random draws: every class is present, and the rows stay paired.
    assert set(data["train_y"].tolist()) == set(range(4)) == set(data["test_y"].tolist())
    rows = [np.flatnonzero((x == r).all(1))[0] for r in data["train_x"]]
    np.testing.assert_array_equal(y[rows], data["train_y"])
    again = dlgn.build_data(config, x, y, x, y)
    assert data["wiring_in"].shape == (2 * config.width,) and data["wiring_inv_in"].shape[0] == 48
    assert data["wiring_hidden"].shape == (config.layers - 1, 2 * config.width)
    assert data["wiring_inv_hidden"].shape[:2] == (config.layers - 1, config.width)
    for name, table in data.items():
        if name.startswith("wiring"):
            assert table.dtype == np.int32
            np.testing.assert_array_equal(table, again[name])
    # The padded inverse tables list exactly the readers of every input.
    for layer in range(1, config.layers):
        flat = data["wiring_hidden"][layer - 1]
        inv = data["wiring_inv_hidden"][layer - 1]
        for i in range(config.width):
            np.testing.assert_array_equal(inv[i][inv[i] < flat.size], np.flatnonzero(flat == i))
    assert not np.array_equal(dlgn.layer_wiring(data, 1), dlgn.layer_wiring(data, 2))
    other = dlgn.build_data(dlgn.Config(**{**config.__dict__, "wiring_seed": 1}), x, y, x, y)
    assert not np.array_equal(data["wiring_in"], other["wiring_in"])
    one_layer = dlgn.Config(**{**config.__dict__, "layers": 1})
    data = dlgn.build_data(one_layer, x, y, x, y)
    assert data["wiring_hidden"].shape == (0, 2 * config.width)
    with pytest.raises(ValueError, match="out_dim"):
        dlgn.build_data(dlgn.Config(width=20, n_classes=10), x, y, x, y)  # 2 * 20 < 48 inputs


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"width": 45}, "divisible"),
        ({"layers": 0}, "layers"),
        ({"wiring": "learned"}, "wiring"),
        ({"train_subset": 0}, "train_subset"),
        ({"group_sum_tau": 0.0}, "group_sum_tau"),
    ],
)
def test_config_rejects_bad_values(changes, match):
    with pytest.raises(ValueError, match=match):
        dlgn.Config(**{**SMALL.__dict__, **changes})


def test_registry_builds_the_task():
    task = tasks.make("dlgn", SMALL)
    assert isinstance(task, dlgn.DLGNTask) and task.config == SMALL
    accepted = grid.accepted_estimators(task)
    assert "softmax_relaxation" in accepted and task.headline_metric == "acc"


@pytest.mark.slow
def test_short_training_through_the_sweep_engine_improves_accuracy():
    config = dlgn.Config(
        layers=2, width=100, n_classes=2, group_sum_tau=3.0, batch_size=64, wiring="random"
    )
    task, data = make(config, n_train=512, n_test=256, d=32)
    assert 0.4 < float(data["test_y"].mean()) < 0.6  # balanced: chance accuracy is about 0.5
    runs = [Run(est, 1.0, 1.0, 0, 0.05) for est in ("decoupled_st", "softmax_relaxation")]
    out = train_runs(task, data, runs, steps=300, eval_every=150, devices=jax.devices()[:1])
    for run in out.runs:
        final, curve = run["final"], run["curve"]
        assert not run["diverged"] and curve["step"] == [150, 300]
        # Measured over 5 seeds: test accuracies 0.82-0.95 (relaxation's train mode 0.95-0.99),
        # train loss (mean over the segment) from 0.84-0.89 to 0.26-0.32 with decoupled_st.
        assert final["test_acc"] > 0.75 and final["test_acc_train_mode"] > 0.75, run
        assert curve["train_loss"][1] < 0.8 * curve["train_loss"][0], run
        assert len(final["gate_hist"]) == 16 and 1 <= final["gate_perplexity"] <= 16


def test_figure_arrays_hold_the_gate_histogram(small):
    task, data = small
    params = task.init_params(jax.random.key(0), data)
    hist = task.figure_arrays(params, data)["gate_hist"]
    np.testing.assert_array_equal(hist, task.gate_histogram(params))
    assert hist.shape == (16,) and float(hist.sum()) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# Samplers.


def test_config_sampler_and_the_sampler_each_estimator_draws_with():
    with pytest.raises(ValueError, match="sampler"):
        dlgn.Config(**{**SMALL.__dict__, "sampler": "sobol"})
    gumbel = dlgn.DLGNTask(SMALL)
    icdf = dlgn.DLGNTask(dlgn.Config(**{**SMALL.__dict__, "sampler": "inverse_cdf"}))
    for entry in E.REGISTRY:
        if not entry.discrete:
            want = "none"
        elif entry.name in ("st_gumbel_softmax", "gumbel_rao", "reinmax_cv", "rloo"):
            # The backward reads the forward's noise or the key (reinmax_cv's control variate);
            # rloo is a score-function sampler with no backward to attach to a given sample.
            want = "gumbel"
        else:
            want = "inverse_cdf"
        assert icdf.sampler_of(entry) == want, entry.name
        assert gumbel.sampler_of(entry) == ("none" if want == "none" else "gumbel")


def test_default_sampler_keeps_the_estimators_stream(small):
    task, _ = small
    logits = 2.0 * jax.random.normal(jax.random.key(0), (SMALL.width, 16))
    key = jax.random.key(1)
    for entry in E.REGISTRY:
        pair = (0.5, 2.0) if entry.n_temperatures == 2 else entry.temperatures_of(0.5)
        got = task.gate_samples(key, logits, entry, *pair)
        np.testing.assert_array_equal(got, entry.uniform()(key, logits, *pair))


@pytest.mark.parametrize("per_example", [False, True])
def test_inverse_cdf_sampler_trains_every_layer(per_example):
    changes = {"sampler": "inverse_cdf", "per_example_samples": per_example}
    config = dlgn.Config(**{**SMALL.__dict__, **changes})
    task, data = make(config)
    params = task.init_params(jax.random.key(0), data)
    x, y = data["train_x"][:16], data["train_y"][:16]
    loss_and_grad = jax.jit(jax.value_and_grad(task.loss, has_aux=True))
    (loss, _), grads = loss_and_grad(
        params, jax.random.key(1), *args(x, y, data, E.REGISTRY["decoupled_st"], 0.5, 2.0)
    )
    assert np.isfinite(float(loss))
    for g in grads["gate_logits"]:
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
    # Its own stream: another sample than the Gumbel-max one of the same key.
    logits = jnp.zeros((SMALL.width, 16))
    z = task.gate_samples(jax.random.key(2), logits, E.REGISTRY["decoupled_st"], 1.0, 1.0)
    assert not np.array_equal(z, E.decoupled_st(jax.random.key(2), logits, 1.0, 1.0))


# ----------------------------------------------------------------------------------------------
# Bit-packed evaluation = the float network.


def float_metrics(task, params, key, x, y, data, estimator, tau_f, tau_b):
    """`acc` and `acc_train_mode` from the float network, with the keys `evaluate` uses."""
    hard = [logic.argmax_coefficients(lg) for lg in params["gate_logits"]]
    k_shared, _ = jax.random.split(key)
    sampled = task._train_coefs(params, k_shared, estimator, tau_f, tau_b)
    n = x.shape[0]
    return {
        "acc": jnp.sum(task.forward(hard, x, data).argmax(-1) == y) / n,
        "acc_train_mode": jnp.sum(task.forward(sampled, x, data).argmax(-1) == y) / n,
    }


@pytest.mark.parametrize("sampler", ["gumbel", "inverse_cdf"])
@pytest.mark.parametrize("name", ["decoupled_st", "st_gumbel_softmax", "softmax_relaxation"])
def test_packed_evaluation_equals_the_float_network(name, sampler):
    config = dlgn.Config(**{**SMALL.__dict__, "sampler": sampler})
    task, data = make(config)
    est = E.REGISTRY[name]
    run = jax.jit(task.evaluate)
    ref = jax.jit(functools.partial(float_metrics, task), static_argnums=5)
    x, y = data["test_x"], data["test_y"]
    for seed in range(3):
        params = task.init_params(jax.random.key(seed), data)
        key = jax.random.key(10 + seed)
        # tau_f = 5: most sampled gates differ from the argmax gates.
        got = run(params, key, *args(x, y, data, est, 5.0, 1.0))
        want = ref(params, key, x, y, data, est, 5.0, 1.0)
        assert {k: float(v) for k, v in got.items()} == {k: float(v) for k, v in want.items()}


@pytest.mark.slow
def test_per_example_samples_keep_the_float_train_mode():
    """With one sample per example the sampled network is no Boolean circuit: `acc` is still
    bit-packed, `acc_train_mode` comes from the float network with the slice keys."""
    config = dlgn.Config(**{**SMALL.__dict__, "per_example_samples": True})
    task, data = make(config)
    est = E.REGISTRY["decoupled_st"]
    params = task.init_params(jax.random.key(2), data)
    x, y = data["test_x"], data["test_y"]
    key = jax.random.key(3)
    got = jax.jit(task.evaluate)(params, key, *args(x, y, data, est, 5.0, 1.0))
    want = jax.jit(functools.partial(float_metrics, task), static_argnums=5)(
        params, key, x, y, data, est, 5.0, 1.0
    )
    assert float(got["acc"]) == float(want["acc"])
    _, k_slices = jax.random.split(key)
    hits = 0
    for s, k in enumerate(jax.random.split(k_slices, 3)):  # 70 examples: slices of 32, 32, 6
        x_s, y_s = x[32 * s : 32 * (s + 1)], y[32 * s : 32 * (s + 1)]
        coefs = task._train_coefs(params, k, est, 5.0, 1.0, 32)
        coefs = [c[:, : x_s.shape[0]] for c in coefs]  # the padded tail's samples, cut
        hits += int(jnp.sum(task.forward(coefs, x_s, data).argmax(-1) == y_s))
    assert float(got["acc_train_mode"]) == pytest.approx(hits / x.shape[0], abs=1e-7)


def test_packed_and_float_predictions_agree_on_a_wide_random_network():
    """Every prediction, not only the accuracy: 4 classes of 1,000 neurons, 3 layers."""
    config = dlgn.Config(layers=3, width=1000, n_classes=4, group_sum_tau=7.0, eval_batch_size=64)
    task, data = make(config, n_train=64, n_test=300, d=200)
    params = task.init_params(jax.random.key(3), data)
    gates = [jnp.stack([jnp.argmax(lg, -1)]) for lg in params["gate_logits"]]
    counts = jax.jit(task.packed_counts)(gates, data["test_x"], data)[0]
    hard = [logic.argmax_coefficients(lg) for lg in params["gate_logits"]]
    logits = jax.jit(task.forward)(hard, data["test_x"], data)
    np.testing.assert_allclose(logits, counts / config.group_sum_tau, rtol=1e-6)
    np.testing.assert_array_equal(counts.argmax(-1), logits.argmax(-1))


def test_evaluate_under_vmap_over_a_grid_of_configs(small):
    """The engine vmaps `evaluate` over configs (parameters, keys, temperatures) with the data
    shared: each config's metrics equal its own evaluation."""
    task, data = small
    est = E.REGISTRY["decoupled_st"]
    params = jax.vmap(task.init_params, in_axes=(0, None))(
        jax.random.split(jax.random.key(4), 3), data
    )
    keys = jax.random.split(jax.random.key(5), 3)
    tau_f, tau_b = jnp.array([0.3, 1.0, 5.0]), jnp.array([1.0, 2.0, 0.5])
    x, y = data["test_x"], data["test_y"]

    def one(p, k, tf, tb):
        return task.evaluate(p, k, *args(x, y, data, est, tf, tb))

    grid = jax.jit(jax.vmap(one))(params, keys, tau_f, tau_b)
    for i in range(3):
        p_i = jax.tree.map(lambda a, i=i: a[i], params)
        want = jax.jit(one)(p_i, keys[i], tau_f[i], tau_b[i])
        assert {k: float(v[i]) for k, v in grid.items()} == {k: float(v) for k, v in want.items()}


class FinalGates(dlgn.DLGNTask):
    """The task, with the final gate logits among the figure arrays the engine returns."""

    def figure_arrays(self, params, data):
        return {**super().figure_arrays(params, data), "logits": jnp.stack(params["gate_logits"])}


def test_trained_network_packed_predictions_equal_the_float_network():
    config = dlgn.Config(
        layers=2,
        width=60,
        n_classes=2,
        group_sum_tau=3.0,
        batch_size=32,
        eval_batch_size=48,
        wiring="random",
        sampler="inverse_cdf",
    )
    task = FinalGates(config)
    data = dlgn.build_data(config, *synthetic(256, 32, 0), *synthetic(100, 32, 1))
    data = jax.tree.map(jnp.asarray, data)
    out = train_runs(
        task,
        data,
        [Run("decoupled_st", 1.0, 1.0, 0, 0.05)],
        steps=60,
        eval_every=60,
        devices=jax.devices()[:1],
    )
    final_logits = list(jnp.asarray(out.figures[0]["logits"]))
    x, y = data["test_x"], data["test_y"]
    packed = logic.predict_from_logits(final_logits, data, config.n_classes, block_words=1)
    hard = [logic.argmax_coefficients(lg) for lg in final_logits]
    floats = jax.jit(task.forward)(hard, x, data).argmax(-1)
    np.testing.assert_array_equal(packed, floats)
    assert len(np.unique(floats)) == 2  # a network that separates, not a constant
    assert out.runs[0]["final"]["test_acc"] == pytest.approx(float(np.mean(floats == y)), abs=0)
