"""Tests of the categorical autoencoder task (`dst_jax.tasks.cae`).

Numerics are checked against plain numpy on tiny shapes; one test trains briefly on a real MNIST
subset through the sweep engine.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dst_jax import estimators as E
from dst_jax.sweep import SweepConfig, grid
from dst_jax.tasks import cae
from dst_jax.tasks.base import Batch, Hparams, split_batch

TINY = cae.Config(encoder=(7,), latents=3, classes=4, decoder=(5,), beta=0.7, eval_batch_size=4)
D = 16  # pixels of the tiny test images (a 4x4 "image")


# Jitted once per shape: op-by-op dispatch would compile every small op separately, which costs
# more CPU time than these tests' arithmetic.
_init = jax.jit(cae.init_params, static_argnums=(1, 2))


def _tiny_problem(n: int = 6, seed: int = 0):
    key_p, key_x = jax.random.split(jax.random.PRNGKey(seed))
    params = _init(key_p, TINY, D)
    x_NxD = jax.random.uniform(key_x, (n, D))
    return params, x_NxD


def _np_params(params):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), params)


def _np_encode(p, x):
    h = x
    for layer in p["encoder"][:-1]:
        h = np.maximum(h @ layer["w"] + layer["b"], 0)
    head = p["encoder"][-1]
    return np.einsum("bh,hlc->blc", h, head["w"]) + head["b"]


def _np_decode(p, z):
    first, *rest = p["decoder"]
    h = np.einsum("blc,lch->bh", z, first["w"]) + first["b"]
    for layer in rest:
        h = np.maximum(h, 0) @ layer["w"] + layer["b"]
    return h


def _np_terms(p, x, codes_BxL):
    """Per-image (bce, kl) in float64, the textbook formulas."""
    x = np.asarray(x, np.float64)
    logits = _np_encode(p, x)
    n_classes = logits.shape[-1]
    z = np.eye(n_classes)[codes_BxL]
    prob = 1 / (1 + np.exp(-_np_decode(p, z)))
    bce = -np.sum(x * np.log(prob) + (1 - x) * np.log(1 - prob), axis=-1)
    q = np.exp(logits - logits.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    kl = np.sum(q * np.log(q / (1 / n_classes)), axis=(-2, -1))
    return bce, kl, logits


def _argmin_codes(key, logits):
    del key  # deterministic, and different from argmax, so the two code paths are told apart
    return jax.nn.one_hot(jnp.argmin(logits, -1), logits.shape[-1], dtype=logits.dtype)


# -- perplexity -----------------------------------------------------------------------------------
def test_code_perplexity_on_hand_made_usage():
    usage_LxC = np.array(
        [
            [5, 5, 5, 5, 5, 5, 5, 5],  # uniform over 8 codes
            [0, 0, 9, 0, 0, 0, 0, 0],  # one code
            [3, 3, 0, 0, 0, 0, 0, 0],  # two codes, equally
            [2, 1, 1, 0, 0, 0, 0, 0],  # p = (1/2, 1/4, 1/4): H = 1.5 log 2
        ]
    )
    got = np.asarray(cae.code_perplexity(usage_LxC))
    np.testing.assert_allclose(got, [8.0, 1.0, 2.0, 2**1.5], rtol=1e-6)
    # Frequencies and counts give the same answer; extra leading axes pass through.
    freqs = usage_LxC / usage_LxC.sum(-1, keepdims=True)
    np.testing.assert_allclose(cae.code_perplexity(freqs[None]), got[None], rtol=1e-6)


def test_code_perplexity_gradient_is_finite_with_unused_codes():
    grad = jax.jit(jax.grad(lambda u: cae.code_perplexity(u).sum()))(jnp.array([[1.0, 0.0, 3.0]]))
    assert np.all(np.isfinite(grad))


# -- the loss -------------------------------------------------------------------------------------
def test_forward_terms_match_numpy():
    params, x = _tiny_problem()
    bce, kl, z = jax.jit(cae.forward, static_argnums=2)(params, x, cae.estimator_lib.argmax_one_hot)
    p = _np_params(params)
    codes = _np_encode(p, np.asarray(x, np.float64)).argmax(-1)
    bce_np, kl_np, _ = _np_terms(p, x, codes)
    np.testing.assert_allclose(bce, bce_np, rtol=1e-5)
    np.testing.assert_allclose(kl, kl_np, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(z).argmax(-1), codes)
    assert bce.shape == kl.shape == (6,) and z.shape == (6, 3, 4)


def _argmin_estimator(key, logits, tau):
    return _argmin_codes(key, logits)


# A deterministic stand-in estimator (a test-local registry entry, never registered).
ARGMIN = E.Estimator("argmin_codes", _argmin_estimator, _argmin_estimator)


def test_task_loss_matches_numpy():
    """Task.loss = mean(bce + beta * kl) with the estimator's codes (made deterministic here)."""
    params, x = _tiny_problem()
    p = _np_params(params)
    codes = _np_encode(p, np.asarray(x, np.float64)).argmin(-1)  # what _argmin_codes picks
    bce_np, kl_np, _ = _np_terms(p, x, codes)
    task = cae.make_task(TINY)
    loss, aux = task.loss(
        params, jax.random.PRNGKey(1), Batch(x), Hparams(ARGMIN, jnp.float32(1), jnp.float32(1))
    )
    np.testing.assert_allclose(loss, np.mean(bce_np + 0.7 * kl_np), rtol=1e-5)
    np.testing.assert_allclose(aux["bce"], bce_np.mean(), rtol=1e-5)
    np.testing.assert_allclose(aux["kl"], kl_np.mean(), rtol=1e-4)


def test_bce_is_stable_for_large_logits():
    logits = jnp.array([-200.0, -30.0, 0.0, 30.0, 200.0])
    got = cae.bce_with_logits(logits, jnp.array([1.0, 0.0, 0.5, 1.0, 0.0]))
    np.testing.assert_allclose(got, [200.0, 0.0, math.log(2), 0.0, 200.0], atol=1e-6)


@pytest.mark.parametrize("estimator", E.CATEGORICAL)
def test_reconstruction_gradient_reaches_the_encoder(estimator):
    # beta = 0: any encoder gradient must come through the estimator's backward pass.
    task = cae.make_task(dataclasses.replace(TINY, beta=0.0))
    params, x = _tiny_problem()
    grads = jax.jit(
        jax.grad(
            lambda p: task.loss(
                p,
                jax.random.PRNGKey(2),
                Batch(x),
                Hparams(E.REGISTRY[estimator], jnp.float32(1.5), jnp.float32(0.5)),
            )[0]
        )
    )(params)
    head = np.asarray(grads["encoder"][-1]["w"])
    assert np.all(np.isfinite(head)) and np.abs(head).max() > 1e-6


# -- evaluation -----------------------------------------------------------------------------------
def test_evaluate_in_padded_slices_matches_whole_split():
    # 10 images in slices of 4: the last slice is padded and its padding must not count.
    params, x = _tiny_problem(n=10, seed=3)
    got = jax.jit(
        lambda p, k: cae.evaluate_codes(p, k, x, _argmin_codes, beta=0.7, eval_batch_size=4)
    )(params, jax.random.PRNGKey(0))
    p = _np_params(params)
    logits = _np_encode(p, np.asarray(x, np.float64))
    bce_s, kl, _ = _np_terms(p, x, logits.argmin(-1))
    bce_d, _, _ = _np_terms(p, x, logits.argmax(-1))

    def perplexity(codes_NxL):
        usage = np.stack([np.bincount(c, minlength=4) for c in codes_NxL.T]) / len(codes_NxL)
        return np.exp(-np.sum(np.where(usage > 0, usage * np.log(np.maximum(usage, 1e-30)), 0), -1))

    np.testing.assert_allclose(got["bce"], bce_s.mean(), rtol=1e-5)
    np.testing.assert_allclose(got["kl"], kl.mean(), rtol=1e-4)
    np.testing.assert_allclose(got["loss"], (bce_s + 0.7 * kl).mean(), rtol=1e-5)
    np.testing.assert_allclose(got["loss_det"], (bce_d + 0.7 * kl).mean(), rtol=1e-5)
    ppl_s, ppl_d = perplexity(logits.argmin(-1)), perplexity(logits.argmax(-1))
    np.testing.assert_allclose(got["perplexity_latent"], ppl_s, rtol=1e-5)
    np.testing.assert_allclose(got["perplexity"], ppl_s.mean(), rtol=1e-5)
    np.testing.assert_allclose(got["perplexity_det"], ppl_d.mean(), rtol=1e-5)


def test_evaluate_vmaps_over_temperatures():
    params, x = _tiny_problem(n=9)
    # Well separated logits, so that tau_f = 1e-3 samples the argmax.
    params["encoder"][-1]["w"] = 100 * params["encoder"][-1]["w"]
    task = cae.make_task(TINY)
    taus = jnp.array([1e-3, 1.0, 1e3])
    decoupled = E.REGISTRY["decoupled_st"]
    ev = jax.jit(
        jax.vmap(
            lambda tf: task.evaluate(
                params, jax.random.PRNGKey(0), Batch(x), Hparams(decoupled, tf, jnp.float32(1))
            )
        )
    )
    m = ev(taus)
    assert set(m) == set(task.metric_directions)
    assert m["perplexity_latent"].shape == (3, TINY.latents)
    ppl = np.asarray(m["perplexity"])
    assert np.all((ppl >= 1) & (ppl <= TINY.classes + 1e-5))
    # Argmax codes do not depend on the forward temperature; sampled codes do (tau 0.05 is
    # nearly argmax, tau 20 nearly uniform, so usage spreads).
    np.testing.assert_allclose(m["loss_det"], m["loss_det"][0], rtol=1e-6)
    np.testing.assert_allclose(m["perplexity"][0], m["perplexity_det"][0], rtol=1e-5)
    assert ppl[2] > ppl[0]


# -- configuration and errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"latents": 0},
        {"classes": 1},
        {"beta": -1.0},
        {"beta": float("nan")},
        {"encoder": "512"},
        {"encoder": (64, 0)},
        {"decoder": (0,)},
        {"batch_size": 0},
        {"eval_batch_size": 0},
        {"train_subset": 0},
        {"score_samples": 1},
    ],
)
def test_config_refuses_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cae.Config(**kwargs)


def test_config_stores_widths_as_tuples():
    config = cae.Config(encoder=[64, 32], decoder=[32])  # as read back from JSON
    assert config.encoder == (64, 32) and config.decoder == (32,)
    assert hash(config) == hash(cae.Config(encoder=(64, 32), decoder=(32,)))


def test_relaxation_is_refused():
    with pytest.raises(ValueError, match="softmax_relaxation not available for the cae task"):
        grid.expand(SweepConfig(estimators=("softmax_relaxation",)), cae.make_task(TINY))


def test_task_contract():
    task = cae.make_task()
    assert task.name == "cae" and task.config == cae.Config()
    assert task.metric_directions[task.headline_metric] == "min"
    assert all(m.removeprefix("test_") in task.metric_directions for m in task.heatmap_metrics)
    assert grid.accepted_estimators(task) == E.REGISTRY.names(discrete=True)
    params = jax.eval_shape(
        task.init_params, jax.random.PRNGKey(0), {"train_x": jnp.zeros((2, 784))}
    )
    shapes = [layer["w"].shape for layer in params["encoder"] + params["decoder"]]
    assert shapes == [(784, 512), (512, 256), (256, 4, 8), (4, 8, 256), (256, 512), (512, 784)]


@pytest.mark.slow
def test_rloo_loss_gives_the_exact_encoder_gradient_in_expectation():
    """With RLOO (beta = 0, one image, 3 latents x 4 classes) the loss is the mean BCE of its
    S = 3 sampled codes, and the mean over 3,000 keys of its gradient for the encoder's output
    bias (= its gradient for the logits) is the exact gradient of E_q[BCE], q = softmax(logits),
    by enumerating the 64 codes, within 5 standard errors; a straight-through estimator's mean
    is not."""
    config = dataclasses.replace(TINY, beta=0.0, score_samples=3)
    task = cae.make_task(config)
    params, x = _tiny_problem(n=1)
    p_np = _np_params(params)
    codes = np.array(list(np.ndindex(4, 4, 4)))  # every code, (64, 3)
    bce = np.array([_np_terms(p_np, x, c[None])[0][0] for c in codes])

    def expected_bce(bias_LxC):
        logits = cae.encode(params, x)[0] - params["encoder"][-1]["b"] + bias_LxC
        logq = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        logq_Z = jnp.sum(logq[jnp.arange(3), codes], axis=-1)
        return jnp.sum(jnp.exp(logq_Z) * bce)

    exact = np.asarray(jax.grad(expected_bce)(params["encoder"][-1]["b"]))

    def bias_grad(key, name):
        def loss(b):
            p = {**params, "encoder": [*params["encoder"][:-1], {**params["encoder"][-1], "b": b}]}
            return task.loss(p, key, Batch(x), Hparams(E.REGISTRY[name], 1.0, 1.0))[0]

        return jax.grad(loss)(params["encoder"][-1]["b"])

    keys = jax.random.split(jax.random.PRNGKey(5), 3000)
    grads = np.asarray(jax.jit(jax.vmap(lambda k: bias_grad(k, "rloo")))(keys), np.float64)
    mean, se = grads.mean(0), grads.std(0, ddof=1) / np.sqrt(len(grads))
    np.testing.assert_array_less(np.abs(mean - exact), 5 * se + 1e-4)
    st = np.asarray(jax.jit(jax.vmap(lambda k: bias_grad(k, "softmax_ste")))(keys[:300]))
    assert np.max(np.abs(st.mean(0) - exact)) > 5 * se.max()
    # The value: the mean BCE of the S codes drawn with split(key, S), no surrogate in it.
    key = jax.random.PRNGKey(1)
    value = task.loss(params, key, Batch(x), Hparams(E.REGISTRY["rloo"], 1.0, 1.0))[0]
    logits = cae.encode(params, x)
    draw = E.get("rloo")
    drawn = [draw(k, logits, 1.0, 1.0)[0].argmax(-1) for k in jax.random.split(key, 3)]
    want = np.mean([_np_terms(p_np, x, np.asarray(c)[None])[0][0] for c in drawn])
    np.testing.assert_allclose(value, want, rtol=1e-5)


def test_score_function_estimators_only_where_a_task_takes_them():
    assert "rloo" in grid.accepted_estimators(cae.make_task(TINY))

    class NoScore:
        name = "toy"
        accepts_relaxation = False

    assert "rloo" not in grid.accepted_estimators(NoScore())
    assert "zgr" in grid.accepted_estimators(NoScore())


def test_init_is_deterministic_given_the_key():
    same = [_init(jax.random.PRNGKey(k), TINY, D) for k in (0, 0, 1)]
    jax.tree.map(np.testing.assert_array_equal, same[0], same[1])
    assert not np.allclose(same[0]["encoder"][0]["w"], same[2]["encoder"][0]["w"])
    # LeCun scaling: kernel variance 1/fan_in (L*C for the decoder's first kernel), biases zero.
    big = _init(
        jax.random.PRNGKey(0), dataclasses.replace(TINY, encoder=(400,), decoder=(300,)), 300
    )
    (w_enc, w_head), (w_dec, w_out) = [
        [layer["w"] for layer in big[k]] for k in ("encoder", "decoder")
    ]
    for w, fan_in in ((w_enc, 300), (w_head, 400), (w_dec, 3 * 4), (w_out, 300)):
        np.testing.assert_allclose(np.var(w) * fan_in, 1.0, rtol=0.08)
        assert np.abs(w).max() <= 2 / 0.8796 / np.sqrt(fan_in) + 1e-6  # truncated at 2 std
    assert w_head.shape == (400, 3, 4) and w_dec.shape == (3, 4, 300)
    assert not any(np.any(layer["b"]) for layer in big["encoder"] + big["decoder"])


# -- the code figure ------------------------------------------------------------------------------
def test_code_grid_holds_other_latents_at_their_mode():
    params, x = _tiny_problem(n=12, seed=5)
    grid = np.asarray(cae.code_grid(params, x))
    assert grid.shape == (3, 4, D)
    p = _np_params(params)
    codes_NxL = _np_encode(p, np.asarray(x, np.float64)).argmax(-1)
    mode_L = np.array([np.bincount(c, minlength=4).argmax() for c in codes_NxL.T])
    for l in range(3):
        for c in range(4):
            code = mode_L.copy()
            code[l] = c
            want = 1 / (1 + np.exp(-_np_decode(p, np.eye(4)[code][None])[0]))
            np.testing.assert_allclose(grid[l, c], want, rtol=1e-5, atol=1e-6)


def test_figure_arrays_hold_the_code_grid():
    config = cae.Config(encoder=(16,), latents=3, classes=5, decoder=(16,))
    task = cae.make_task(config)
    x = jax.random.uniform(jax.random.PRNGKey(0), (20, 784))
    params = _init(jax.random.PRNGKey(1), config, 784)
    arrays = task.figure_arrays(params, {"test_x": x})
    np.testing.assert_array_equal(arrays["code_grid"], cae.code_grid(params, x))
    assert arrays["code_grid"].shape == (3, 5, 784)


@pytest.mark.slow
# -- a short real run -----------------------------------------------------------------------------
def test_short_run_lowers_validation_loss_for_every_estimator(shared_data_dir):
    from dst_jax.sweep.engine import train_runs
    from dst_jax.sweep.grid import Run

    config = cae.Config(
        encoder=(128,), decoder=(128,), train_subset=1000, test_subset=500, eval_batch_size=250
    )
    task = cae.make_task(config)
    data, info = task.load_data(shared_data_dir)
    assert info["dataset"] == "mnist" and data["train_x"].shape == (900, 784)  # 10% validation
    assert data["val_x"].shape == (100, 784)
    runs = [
        Run("decoupled_st", 2.0, 0.5, 0, 2e-3),
        Run("softmax_ste", 1.0, 1.0, 0, 2e-3),
        Run("st_gumbel_softmax", 1.0, 1.0, 0, 2e-3),
        Run("identity_ste", 1.0, 1.0, 0, 2e-3),
    ]
    out = train_runs(
        task,
        data,
        runs,
        steps=30,
        eval_every=15,
        chunk_size=1,
        devices=jax.devices()[:1],
        test_at="every",  # the test curve below has a point at every evaluation
    )
    # The untrained model's loss: about D log 2 = 543 nats per image for every init.
    start = jax.jit(
        lambda key: task.evaluate(
            task.init_params(key, data),
            key,
            split_batch(data, "test"),
            Hparams(E.REGISTRY["decoupled_st"], 1.0, 1.0),
        )["loss"]
    )(jax.random.PRNGKey(0))
    for run in out.runs:
        final = run["final"]["test_loss"]
        assert final < 0.6 * float(start), (run["estimator"], final, float(start))
        curve = run["curve"]["test_loss"]
        assert run["curve"]["step"] == [15, 30] and curve[-1] == final and curve[1] < curve[0]
        assert 1.0 <= run["final"]["test_perplexity"] <= 8.0
