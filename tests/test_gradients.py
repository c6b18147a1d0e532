"""`dst_jax.gradients`: exact gradients by enumeration against closed forms, sampled gradients
against the exact ones, grids against single configurations, the metrics on hand-made draws, and
`python -m experiments.gradients cae --smoke` end to end."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TEST_XLA_FLAGS

from dst_jax import estimators as E
from dst_jax import gradients as G
from dst_jax.gradients import claims

ROOT = Path(__file__).resolve().parents[1]
L, C = 2, 3


def softmax(l, tau):
    return jax.nn.softmax(l / tau, axis=-1)


def rand(seed, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float64)


# ----------------------------------------------------------------------------------------------
# Codes and exact gradients.


def test_codes_are_enumerated_in_index_order():
    codes = np.asarray(G.all_codes(L, C))
    assert codes.tolist() == [list(c) for c in itertools.product(range(C), repeat=L)]
    z = G.one_hot_codes(L, C)
    assert z.shape == (C**L, L, C)
    assert [int(G.code_index(zi)) for zi in z] == list(range(C**L))


@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_exact_gradient_of_linear_f(x64, tau):
    # f(z) = sum_i <w_i, z_i>, so E f = sum_i <softmax(l_i / tau), w_i>.
    w, l = rand(0, (L, C)), rand(1, (L, C), 2.0)
    f_Z, _ = G.tabulate(lambda z: jnp.sum(w * z), L, C, jnp.float64)
    analytic = lambda l: jnp.sum(softmax(l, tau) * w)  # noqa: E731
    np.testing.assert_allclose(G.expectation(f_Z, l, tau), analytic(l), rtol=1e-12)
    np.testing.assert_allclose(
        G.exact_gradient(f_Z, l, tau), jax.grad(analytic)(l), rtol=1e-10, atol=1e-14
    )


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_exact_gradient_of_quadratic_f(x64, tau):
    # f(z) = sum_ij z_i^T A_ij z_j + <w, z>. Latents are independent and z_i z_i^T = diag(z_i),
    # so E f = sum_{i != j} p_i^T A_ij p_j + sum_i <diag(A_ii), p_i> + <w, p>.
    A, w, l = rand(2, (L, L, C, C)), rand(3, (L, C)), rand(4, (L, C), 1.5)

    def f(z):
        return jnp.einsum("ic,ijcd,jd->", z, A, z) + jnp.sum(w * z)

    def analytic(l):
        p = softmax(l, tau)
        cross = jnp.einsum("ic,ijcd,jd->ij", p, A, p)
        diag = jnp.einsum("iicc,ic->i", A, p)
        return jnp.sum(cross) - jnp.trace(cross) + jnp.sum(diag) + jnp.sum(w * p)

    f_Z, df = G.tabulate(f, L, C, jnp.float64)
    np.testing.assert_allclose(G.expectation(f_Z, l, tau), analytic(l), rtol=1e-12)
    np.testing.assert_allclose(
        G.exact_gradient(f_Z, l, tau), jax.grad(analytic)(l), rtol=1e-10, atol=1e-13
    )
    # The tables hold f and grad f at every code.
    z = G.one_hot_codes(L, C, jnp.float64)
    np.testing.assert_allclose(df, jax.vmap(jax.grad(f))(z), rtol=1e-12)


def test_exact_gradient_survives_a_nearly_deterministic_q(x64):
    # f values in the hundreds, q almost a point mass: the centred form keeps the tiny gradient.
    f_Z = 300.0 + rand(5, (C**L,))
    l = jnp.array([[25.0, 0.0, -3.0], [0.0, 30.0, 1.0]])
    g = G.exact_gradient(f_Z, l, 1.0)
    q = jnp.exp(G.log_q(l, 1.0))
    score = G.one_hot_codes(L, C, jnp.float64) - softmax(l, 1.0)  # grad_l log q(z), per code
    want = jnp.einsum("z,z,zlc->lc", q, f_Z - jnp.sum(q * f_Z), score)
    np.testing.assert_allclose(g, want, rtol=1e-8)
    assert 0 < float(jnp.linalg.norm(g)) < 1e-9


# ----------------------------------------------------------------------------------------------
# Sampled gradients.


def reinforce(key, l, f_Z, n):
    """n score-function draws (f(z) - E f) grad_l log q(z; l), z ~ q = softmax(l); (n, L, C)."""
    idx = jax.random.categorical(key, l, shape=(n, L))
    z = jax.nn.one_hot(idx, C, dtype=l.dtype)
    code = jnp.sum(idx * C ** jnp.arange(L - 1, -1, -1), axis=-1)
    p = softmax(l, 1.0)
    baseline = jnp.sum(jnp.exp(G.log_q(l, 1.0)) * f_Z)  # a constant: unbiased
    return (f_Z[code] - baseline)[:, None, None] * (z - p)


@pytest.mark.slow
def test_unbiased_estimator_bias_shrinks_like_one_over_sqrt_n(x64):
    f_Z, l = rand(6, (C**L,), 3.0), rand(7, (L, C))
    g = G.exact_gradient(f_Z, l, 1.0)
    reps = jax.random.split(jax.random.PRNGKey(8), 200)

    def mean_bias(n):
        q = jax.vmap(lambda k: G.quality(reinforce(k, l, f_Z, n), g))(reps)
        return float(jnp.mean(q["bias"])), float(jnp.mean(q["spread"]))

    (b1, s1), (b4, s4) = mean_bias(256), mean_bias(1024)
    assert 1.8 < b1 / b4 < 2.2, (b1, b4)
    # The spread is a property of one draw, not of N.
    assert abs(s1 / s4 - 1) < 0.05
    q = G.quality(reinforce(jax.random.PRNGKey(9), l, f_Z, 65536), g)
    assert float(q["bias"]) < 3 * float(q["spread"]) / 256 < 0.05
    assert float(q["cosine"]) > 0.99


@pytest.mark.slow
def test_straight_through_is_exact_for_linear_f(x64):
    # For f linear in z, the ST backward J(softmax(l / tau_b)) w / tau_b does not depend on the
    # sample: every draw is the gradient of E_{softmax(l / tau_b)} f. At tau_f = tau_b it is the
    # exact gradient of the forward's distribution.
    w, l = rand(10, (L, C)), rand(11, (L, C))
    f_Z, df = G.tabulate(lambda z: jnp.sum(w * z), L, C, jnp.float64)
    sample = E.REGISTRY["decoupled_st"].uniform()
    taus_f, taus_b = jnp.array([0.7, 0.7, 2.0]), jnp.array([0.7, 3.0, 0.5])
    q = G.grid_quality(
        sample, jax.random.PRNGKey(0), l, G.tabulated(f_Z, df), f_Z, taus_f, taus_b, taus_f, 32
    )["tau_f"]
    np.testing.assert_allclose(q["spread"], 0.0, atol=1e-12)
    np.testing.assert_allclose(q["bias"][0], 0.0, atol=1e-12)
    for k in (1, 2):
        got = G.exact_gradient(f_Z, l, taus_b[k])
        want = G.exact_gradient(f_Z, l, taus_f[k])
        rel = jnp.linalg.norm(got - want) / jnp.linalg.norm(want)
        np.testing.assert_allclose(q["bias"][k], rel, rtol=1e-9)


def test_grid_config_equals_that_config_alone():
    l = jax.random.normal(jax.random.PRNGKey(12), (L, C))
    w = jax.random.normal(jax.random.PRNGKey(13), (L, C, C))
    f = lambda z: jnp.sum(jnp.einsum("ic,icd->id", z, w) ** 2)  # noqa: E731
    key = jax.random.PRNGKey(1)
    taus_f = jnp.array([0.3, 1.0, 2.0, 0.5, 5.0])
    taus_b = jnp.array([1.0, 0.2, 2.0, 3.0, 0.7])
    grads = jax.jit(G.estimator_gradients, static_argnums=(0, 3, 6, 7))
    for name in ("decoupled_st", "gumbel_rao"):
        sample = E.REGISTRY[name].uniform()
        grid = grads(sample, key, l, f, taus_f, taus_b, 16, None)
        chunked = grads(sample, key, l, f, taus_f, taus_b, 16, 2)
        assert grid.shape == (5, 16, L, C)
        np.testing.assert_allclose(chunked, grid, rtol=1e-6, atol=1e-6)
        for k in range(5):
            alone = grads(sample, key, l, f, taus_f[k : k + 1], taus_b[k : k + 1], 16, None)
            np.testing.assert_allclose(alone[0], grid[k], rtol=1e-6, atol=1e-6)


def test_quality_on_hand_made_draws(x64):
    g = jnp.array([[3.0, 0.0, -4.0], [0.0, 0.0, 0.0]])  # |g| = 5
    same = G.quality(jnp.broadcast_to(g, (7, L, C)), g)
    np.testing.assert_allclose(
        [same["bias"], same["spread"], same["cosine"]], [0, 0, 1], atol=1e-15
    )
    # Draws g + d and g - d: mean g, every draw |d| from it.
    d = jnp.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])  # |d| = sqrt(5)
    pm = G.quality(jnp.stack([g + d, g - d]), g)
    np.testing.assert_allclose(pm["bias"], 0.0, atol=1e-15)
    np.testing.assert_allclose(pm["spread"], np.sqrt(5) / 5)
    # Twice the gradient: relative bias 1, same direction.
    twice = G.quality(jnp.stack([2 * g, 2 * g]), g)
    np.testing.assert_allclose([twice["bias"], twice["cosine"]], [1.0, 1.0])
    # A mean orthogonal to g: cosine 0, bias |d - g| / |g|; the opposite of g: cosine -1.
    ortho = G.quality(d[None], g)
    np.testing.assert_allclose([ortho["cosine"], ortho["bias"]], [0.0, np.sqrt(30) / 5], atol=1e-15)
    np.testing.assert_allclose(G.quality(-g[None], g)["cosine"], -1.0)
    # A zero reference has no relative error.
    zero = G.quality(jnp.stack([g, g]), jnp.zeros_like(g))
    assert all(np.isnan(float(v)) for v in zero.values())


def test_sampling_temperature_is_the_registrys_forward_temperature():
    taus = (0.3, 2.0)
    got = {
        e.name: G.configs(e, taus)["tau_q"]
        for e in E.REGISTRY
        if e.discrete and e.n_temperatures == 1
    }
    np.testing.assert_array_equal(got["softmax_ste"], taus)
    np.testing.assert_array_equal(got["identity_ste"], taus)
    # Forwards that sample at temperature 1 whatever their tau.
    for name in ("st_gumbel_softmax", "reinmax", "gumbel_rao"):
        np.testing.assert_array_equal(got[name], [1.0, 1.0])
    # Two temperatures: the forward samples at tau_f.
    np.testing.assert_array_equal(
        G.configs(E.REGISTRY["decoupled_st"], taus)["tau_q"], [0.3, 0.3, 2.0, 2.0]
    )


def test_configs_cover_the_registry_grid():
    taus = (0.5, 1.0, 2.0)
    for e in E.REGISTRY:
        if not e.discrete:
            continue
        c = G.configs(e, taus)
        if e.n_temperatures == 2:
            assert c["shape"] == (3, 3)
            assert list(zip(c["tau_f"], c["tau_b"], strict=True)) == list(
                itertools.product(taus, taus)
            )
            np.testing.assert_array_equal(c["tau_q"], c["tau_f"])
        elif e.n_temperatures == 0:  # zgr, rloo: one configuration, recorded at (1, 1)
            assert c["shape"] == ()
            assert list(zip(c["tau_f"], c["tau_b"], c["tau_q"], strict=True)) == [(1, 1, 1)]
        else:
            assert c["shape"] == (3,)
            assert [e.temperatures_of(t) for t in taus] == list(
                zip(c["tau_f"], c["tau_b"], strict=True)
            )
    with pytest.raises(ValueError, match="taus"):
        G.configs(E.REGISTRY["decoupled_st"], (0.5, 0.0))


def test_claimed_moves():
    m = np.array([[3.0, 2.0, 2.0], [4.0, 1.0, np.nan]])
    np.testing.assert_array_equal(G.claimed_moves(m, 1, "down"), [[True, False], [True, False]])
    np.testing.assert_array_equal(G.claimed_moves(m, 0, "up"), [[True, False, False]])


# ----------------------------------------------------------------------------------------------
# The protocol on a tiny model.


def tiny_objective(theta, z_LxC, x_D):
    h_H = jax.nn.relu(jnp.einsum("lc,lch->h", z_LxC, theta["w1"]) + theta["b1"])
    y_D = h_H @ theta["w2"]
    return jnp.sum(jnp.maximum(y_D, 0) - x_D * y_D + jnp.log1p(jnp.exp(-jnp.abs(y_D))))


@pytest.mark.slow
def test_protocol_tables_equal_autodiff_through_the_decoder(x64):
    theta = {"w1": rand(20, (L, C, 4)), "b1": rand(21, (4,)), "w2": rand(22, (4, 5))}
    x_S = jax.random.uniform(jax.random.PRNGKey(23), (2, 5), jnp.float64)
    l_S = rand(24, (2, L, C))
    # Two backward passes that differ most: a surrogate Jacobian, and k conditional draws.
    entries = [E.REGISTRY[n] for n in ("decoupled_st", "gumbel_rao")]
    kwargs = dict(entries=entries, taus=(0.5, 2.0), n_draws=8, chunk_size=3)
    key = jax.random.PRNGKey(25)
    tab = G.gradient_quality(tiny_objective, theta, x_S, l_S, key, **kwargs)
    direct = G.gradient_quality(tiny_objective, theta, x_S, l_S, key, direct=True, **kwargs)
    assert set(tab["estimators"]) == {"decoupled_st", "gumbel_rao"}
    for name in ("decoupled_st", "gumbel_rao"):
        for ref in G.REFERENCES:
            for m in G.METRICS:
                got = tab["estimators"][name]["per_image"][ref][m]
                want = direct["estimators"][name]["per_image"][ref][m]
                assert got.shape == (2, len(tab["estimators"][name]["tau_f"]))
                np.testing.assert_allclose(got, want, rtol=1e-10, err_msg=f"{name} {ref} {m}")
    f_Z = jax.vmap(lambda z: tiny_objective(theta, z, x_S[0]))(G.one_hot_codes(L, C, jnp.float64))
    np.testing.assert_allclose(tab["expected_f"][0], G.expectation(f_Z, l_S[0]))
    with pytest.raises(ValueError, match="relaxation"):
        G.gradient_quality(
            tiny_objective, theta, x_S, l_S, key, entries=[E.REGISTRY["softmax_relaxation"]]
        )


# ----------------------------------------------------------------------------------------------
# The experiment.


def test_claim_check_on_a_grid_that_obeys_it():
    taus = np.array([0.5, 1.0, 2.0])
    tf, tb = np.meshgrid(taus, taus, indexing="ij")
    grid = {"bias": tf / tb, "spread": 2 * tf / tb, "cosine": 0 * tf}
    measured = {
        "toy": {
            "shape": (3, 3),
            "tau_f": tf.ravel(),
            "tau_b": tb.ravel(),
            "results": {"init": {"tau1": {**grid, "median": {**grid, "bias": -tf}}}},
        }
    }
    # Per-image values scattered around the grid: every move stands out of the noise.
    noise = 0.01 * np.random.default_rng(0).standard_normal((5, 9))
    per_image = {
        "init": {"toy": {"per_image": {"tau1": {m: g.ravel() + noise for m, g in grid.items()}}}}
    }
    (mean,) = claims.claim_check(measured, "mean", per_image)
    assert mean["verdict"] == "holds"
    assert all(p["fraction"] == 1.0 for p in mean["parts"].values())
    assert all(p["significantly_for"] == 1.0 for p in mean["parts"].values())
    (median,) = claims.claim_check(measured, "median")
    assert median["parts"]["bias_up_along_tau_f"]["fraction"] == 0.0
    assert median["parts"]["bias_up_along_tau_f"]["verdict"] == "fails"
    assert median["verdict"] == "partly"


@pytest.mark.slow
def test_smoke_end_to_end(tmp_path, shared_data_dir):
    out = tmp_path / "gradients"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": TEST_XLA_FLAGS}
    cmd = [sys.executable, "-m", "experiments.gradients", "cae", "--smoke", "--out", str(out)]
    proc = subprocess.run(
        [*cmd, "--data-dir", shared_data_dir],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "gradients.json").read_text())
    assert set(doc["estimators"]) == set(E.REGISTRY.names(discrete=True))
    assert set(doc["skipped"]) == set(E.REGISTRY.names(discrete=False))
    for name, est in doc["estimators"].items():
        for ckpt in ("init", "trained"):
            for ref in G.REFERENCES:
                res = est["results"][ckpt][ref]
                for m in G.METRICS:
                    values = np.array(res[m], dtype=float)
                    assert values.shape == tuple(est["shape"]), (name, m)
                    assert np.isfinite(values).all(), (name, ckpt, ref, m)
    assert {"machine", "versions", "settings", "wall_s", "command", "claim", "best"} <= set(doc)
    # The provenance record every output file holds (`dst_jax.provenance.record`).
    assert {"git_commit", "git_dirty", "created_utc"} <= set(doc)
    assert doc["training"]["trainer"] == "dst_jax.sweep.train.make_fns"
    png = b"\x89PNG\r\n\x1a\n"
    two = [e.name for e in E.REGISTRY if e.discrete and e.n_temperatures == 2]
    for name in two:
        for ckpt in ("init", "trained"):
            for ref in G.REFERENCES:
                for m in G.METRICS:
                    assert (out / f"heatmap_{name}_{ckpt}_{ref}_{m}.png").read_bytes()[:8] == png
    assert (out / "curves_trained_tau_f.png").read_bytes()[:8] == png
    summary = (out / "summary.md").read_text()
    assert "## Verdict" in summary and "decoupled_st" in summary
    per_image = np.load(out / "per_image.npz")
    assert per_image["init/decoupled_st/tau1/bias"].shape == (4, 9)
    # --replot redraws the figures from gradients.json and measures nothing.
    measured = (out / "gradients.json").stat().st_mtime_ns
    (out / "curves_trained_tau_f.png").unlink()
    proc = subprocess.run(
        [*cmd, "--replot"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "curves_trained_tau_f.png").read_bytes()[:8] == png
    assert (out / "gradients.json").stat().st_mtime_ns == measured


def test_replot_without_a_finished_analysis_is_a_one_line_error(tmp_path, capsys):
    from experiments import gradients as exp

    assert exp.main(["cae", "--out", str(tmp_path), "--replot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "gradients.json not found" in err
    assert err.count("\n") == 1


@pytest.mark.slow
def test_rloo_bias_is_sampling_error_and_shrinks_like_one_over_sqrt_n(x64):
    """RLOO in the protocol (tabulated f, 24 images): its relative bias is sampling error
    alone (median noise ratio bias sqrt(N) / spread near 1) and halves from N = 256 to 1,024
    draws; a biased estimator's (Softmax STE at tau 1) ratio is far above 1."""
    theta = {"w1": rand(30, (L, C, 4)), "b1": rand(31, (4,)), "w2": rand(32, (4, 5))}
    x_S = jax.random.uniform(jax.random.PRNGKey(33), (24, 5), jnp.float64)
    l_S = rand(34, (24, L, C))
    entries = [E.REGISTRY[n] for n in ("rloo", "softmax_ste")]
    key = jax.random.PRNGKey(35)

    def per_image(n_draws):
        out = G.gradient_quality(
            tiny_objective, theta, x_S, l_S, key, entries=entries, taus=(1.0,), n_draws=n_draws
        )
        return {n: out["estimators"][n]["per_image"]["tau1"] for n in ("rloo", "softmax_ste")}

    few, many = per_image(256), per_image(1024)
    rloo = G.noise_ratio(many["rloo"]["bias"], many["rloo"]["spread"], 1024)
    assert 0.6 < np.median(rloo) < 1.4
    st = G.noise_ratio(many["softmax_ste"]["bias"], many["softmax_ste"]["spread"], 1024)
    assert np.median(st) > 3
    shrink = np.mean(few["rloo"]["bias"]) / np.mean(many["rloo"]["bias"])
    assert 1.5 < shrink < 2.7, shrink
    # The spread is a property of one draw, not of N; the mean points along g.
    assert abs(np.mean(few["rloo"]["spread"]) / np.mean(many["rloo"]["spread"]) - 1) < 0.1
    assert np.min(many["rloo"]["cosine"]) > 0.9
    with pytest.raises(ValueError, match="score_samples"):
        G.gradient_quality(tiny_objective, theta, x_S, l_S, key, entries=entries, score_samples=1)


def test_noise_ratio():
    np.testing.assert_allclose(G.noise_ratio([0.1, 0.2], [1.6, 0.8], 256), [1.0, 4.0])
    # Identical draws: a bias is no sampling error (inf); no bias is 0; undefined stays NaN.
    np.testing.assert_array_equal(
        G.noise_ratio([0.1, 0.0, np.nan], [0.0, 0.0, 0.0], 64), [np.inf, 0.0, np.nan]
    )
