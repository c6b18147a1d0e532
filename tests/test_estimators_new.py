"""The newest studies' estimators (`dst_jax.estimators.recent`): ZGR, MVE, Gapped ST, ReinMax-CV,
and the RLOO score-function baseline.

Sources of the references (tests/published_estimators.py writes each out independently):
- ZGR and MVE: `Gradient_estimators.py` of James-Hooper123/Generalized-and-Optimal-Straight-
  Through-Estimators (functions `ZGR`, `MVE`).
- Gapped ST: `gst_mover` in `model/basic.py` of chijames/GST (Fan et al., ICML 2022), the
  version ReinMax's benchmarks run (gap 1.0, `detach=True`).
- ReinMax-CV: `_CategoricalReinMaxCVST.backward` of Algomancer/Better-Straight-Through-
  Estimators (`reinmax_cv.py`, `beyond_reinmax.py`).
- RLOO: the textbook estimator (Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for
  free!"), checked against the exact gradient by enumerating every tuple of samples.
"""

import itertools

import chex
import estimator_calls as C  # tests/estimator_calls.py
import jax
import jax.numpy as jnp
import numpy as np
import published_estimators as P  # tests/published_estimators.py
import pytest

from dst_jax import estimators as E
from dst_jax.estimators import noise
from dst_jax.estimators import recent as R

NEW = ("zgr", "mve", "gapped_st", "reinmax_cv")
SAMPLING = (*NEW, "rloo")
N = 20_000


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.linalg.norm(got - want) / np.linalg.norm(want)


# ----------------------------------------------------------------------------------------------
# Backward passes against the published formulas (float64).


def reference_matrices(name, key, l, d, tau):
    """(B, K, K) published Jacobians for rows l (B, K) with samples d (B, K)."""
    l, d = np.asarray(l), np.asarray(d)
    if name == "zgr":
        return np.stack([P.zgr(li, di) for li, di in zip(l, d, strict=True)])
    if name == "mve":
        return np.stack([P.mve(li, di, tau) for li, di in zip(l, d, strict=True)])
    if name == "gapped_st":
        return np.stack([P.gapped_st(li, di, tau) for li, di in zip(l, d, strict=True)])
    assert name == "reinmax_cv"
    # The noise, rebuilt from the keys the estimator derives: one fresh Gumbel draw, and the
    # exponentials E of the k = 32 conditional draws, put through the published formula
    # c_x = -log E_x, c_j = -log(E_j / pi_D_j + E_x) (the log-partition of theta_D is 0).
    gs_key, gr_key = jax.random.split(jax.random.fold_in(key, 2))
    g = np.asarray(noise._gumbel_noise(gs_key, l.shape, jnp.float64))
    tiny = np.finfo(np.float64).tiny
    u = np.asarray(jax.random.uniform(gr_key, (32, *l.shape), jnp.float64, minval=tiny))
    e = -np.log(u)
    out = []
    for b in range(l.shape[0]):
        p = P.softmax(l[b])
        pi_d = (p + d[b]) / 2
        x = int(np.argmax(d[b]))
        cond = -np.log(e[:, b] / pi_d + e[:, b, x : x + 1])
        cond[:, x] = -np.log(e[:, b, x])
        out.append(P.reinmax_cv(l[b], d[b], tau, 1.5, g[b], cond))
    return np.stack(out)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("tau", [0.5, 1.9])
def test_vjp_matches_the_published_formula(x64, name, tau):
    k1, k2, key = jax.random.split(jax.random.key(5), 3)
    l = 1.5 * jax.random.normal(k1, (6, 5), jnp.float64)
    v = jax.random.normal(k2, (6, 5), jnp.float64)
    fn = C.get(name)
    z, vjp = jax.vjp(lambda l, tb: fn(key, l, 0.3, tb), l, jnp.float64(tau))
    ct_l, ct_tau = vjp(v)
    # The forward is the Gumbel-max sample at temperature 1 (whatever tau_f, tau_b).
    np.testing.assert_array_equal(z, E.sample_gumbel_max(key, l, 1.0))
    m = reference_matrices(name, key, l, z, tau)
    want = np.einsum("bi,bij->bj", np.asarray(v), m)
    assert ct_l.dtype == jnp.float64 and rel_err(ct_l, want) < 1e-9
    assert ct_tau == 0.0


@pytest.mark.parametrize("tau", [1e-6, 1.0, 1e3, 1e6])
def test_mve_matrix_matches_the_published_construction(x64, tau):
    """Over the published schedule's range of `temp` (1 to 1e6) and near 0, where S = J(p)."""
    l = jnp.array([[0.7, -0.3, 0.2, 1.1, -1.0], [4.0, -2.0, 0.0, 0.5, 1.0]], jnp.float64)
    p = jax.nn.softmax(l)
    for x in range(5):
        d = jax.nn.one_hot(jnp.array([x, (x + 2) % 5]), 5, dtype=jnp.float64)
        got = E.mve_matrix(p, d, tau)
        want = reference_matrices("mve", None, l, d, tau)
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12)
    if tau == 1e-6:
        jac = np.stack([P.softmax_jacobian(pi) for pi in np.asarray(p)])
        np.testing.assert_allclose(got, jac, atol=1e-6)


def test_mve_in_float32_stays_close_at_the_largest_weight():
    """float32 at temp = 1e6 (the end of the published schedule) against float64."""
    l = np.array([0.7, -0.3, 0.2, 1.1, -1.0])
    d = np.eye(5)[3]
    want = P.mve(l, d, 1e6)
    p32 = jax.nn.softmax(jnp.asarray(l, jnp.float32))
    got = E.mve_matrix(p32, jnp.asarray(d, jnp.float32), jnp.float32(1e6))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_gapped_st_surrogate_puts_the_sample_on_top_by_the_gap(x64):
    l = jnp.array([[2.0, 1.5, -1.0, 1.8]], jnp.float64)
    for x in range(4):
        d = jax.nn.one_hot(jnp.array([x]), 4, dtype=jnp.float64)
        shifted = l + R._gap_shift(d, l, 1.0)
        others = np.delete(np.asarray(shifted[0]), x)
        assert shifted[0, x] == 2.0 and np.all(others <= 2.0 - 1.0)
        # Classes already gap below the top keep their logit.
        untouched = [j for j in range(4) if j != x and l[0, j] <= 1.0]
        np.testing.assert_array_equal(shifted[0, untouched], l[0, untouched])


# ----------------------------------------------------------------------------------------------
# Expectations over the sample: exact, by enumerating D (given-sample forms).


def expected_backward(name, l, cotangent_of_d, tau=1.0):
    """sum_x p_x VJP(D = e_x) of the cotangent `cotangent_of_d(D)`, exactly."""
    entry = E.REGISTRY[name]
    p = jax.nn.softmax(l)
    total = jnp.zeros_like(l)
    for x in range(l.shape[-1]):
        d = jax.nn.one_hot(x, l.shape[-1], dtype=l.dtype)
        _, vjp = jax.vjp(lambda l, d=d: entry.given_sample.straight_through(d, l, 1.0, tau), l)
        total = total + p[x] * vjp(cotangent_of_d(d))[0]
    return total


def l6():
    """Six-class logits in float64 (call inside an x64 test)."""
    return jnp.array([0.7, -0.3, 0.2, 1.1, -1.0, 0.4], jnp.float64)


def test_zgr_is_unbiased_for_linear_and_quadratic_losses(x64):
    """For a one-hot D, D^T A D + c.D = (diag(A) + c).D, so grad E[f] = J(p)(diag(A) + c). ZGR's
    expected backward equals it (E[(D - p)(D - p)^T] = J(p) and the symmetric part cancels);
    the softmax ST's does not for the quadratic (its gradient reads (A + A^T) D)."""
    L6 = l6()
    k1, k2 = jax.random.split(jax.random.key(0))
    c = jax.random.normal(k1, (6,), jnp.float64)
    a = jax.random.normal(k2, (6, 6), jnp.float64)
    p = jax.nn.softmax(L6)
    jac = jnp.diag(p) - jnp.outer(p, p)
    linear = expected_backward("zgr", L6, lambda d: c)
    np.testing.assert_allclose(linear, jac @ c, rtol=1e-12, atol=1e-14)
    quadratic = expected_backward("zgr", L6, lambda d: (a + a.T) @ d + c)
    exact = jac @ (jnp.diag(a) + c)
    np.testing.assert_allclose(quadratic, exact, rtol=1e-12, atol=1e-14)
    st = expected_backward("softmax_ste", L6, lambda d: (a + a.T) @ d + c)
    assert rel_err(st, exact) > 0.05


def test_mve_is_unbiased_for_linear_losses_and_its_quadratic_bias_shrinks_with_tau(x64):
    L6 = l6()
    k1, k2 = jax.random.split(jax.random.key(1))
    c = jax.random.normal(k1, (6,), jnp.float64)
    a = jax.random.normal(k2, (6, 6), jnp.float64)
    p = jax.nn.softmax(L6)
    jac = jnp.diag(p) - jnp.outer(p, p)
    exact_q = jac @ (jnp.diag(a) + c)
    errors = []
    for tau in (1e-3, 1.0, 10.0, 1e3, 1e6):
        linear = expected_backward("mve", L6, lambda d: c, tau)
        np.testing.assert_allclose(linear, jac @ c, rtol=1e-10, atol=1e-13)
        quadratic = expected_backward("mve", L6, lambda d: (a + a.T) @ d + c, tau)
        errors.append(rel_err(quadratic, exact_q))
    assert errors[0] > 0.05 and errors[-1] < 1e-4
    assert all(e2 < e1 for e1, e2 in zip(errors, errors[1:], strict=False))


def test_gapped_st_is_biased_for_a_linear_loss(x64):
    """No unbiasedness is claimed for Gapped ST: its expected backward differs from J(p) c."""
    L6 = l6()
    c = jnp.array([0.3, -1.2, 0.5, 2.0, 0.1, -0.4], jnp.float64)
    p = jax.nn.softmax(L6)
    exact = (jnp.diag(p) - jnp.outer(p, p)) @ c
    assert rel_err(expected_backward("gapped_st", L6, lambda d: c), exact) > 0.05


# ----------------------------------------------------------------------------------------------
# Sample laws, Bernoulli forms, extremes, input checks.


@pytest.mark.parametrize("name", SAMPLING)
@pytest.mark.parametrize("form", ["categorical", "bernoulli"])
def test_samples_follow_the_model_distribution_whatever_the_temperatures(name, form):
    """Frequencies of N draws (one key) within 5 binomial sigma of softmax(l) / sigmoid(a);
    the temperatures do not move the sample (the same key gives the same draws)."""
    fn = C.get(name, form)
    base = jnp.array([0.5, 0.2, -0.3, 0.0]) if form == "categorical" else jnp.array([-1.0, 0.4])
    logits = jnp.broadcast_to(base, (N, *base.shape))
    key = jax.random.key(7)
    z = np.asarray(fn(key, logits, 0.3, 2.0))
    p = np.asarray(jax.nn.softmax(base) if form == "categorical" else jax.nn.sigmoid(base))
    sigma = np.sqrt(p * (1 - p) / N)
    np.testing.assert_array_less(np.abs(z.mean(0) - p), 5 * sigma)
    np.testing.assert_array_equal(fn(key, logits, 4.0, 0.1), z)


@pytest.mark.parametrize("name", SAMPLING)
def test_bernoulli_is_categorical_on_zero_and_a(x64, name):
    cat, ber = C.get(name), C.get(name, "bernoulli")
    k1, k2, key = jax.random.split(jax.random.key(2), 3)
    a = 1.5 * jax.random.normal(k1, (300,), jnp.float64)
    w = jax.random.normal(k2, a.shape, jnp.float64)

    def value_and_grad(fn):
        return fn(a), jax.grad(lambda a: jnp.sum(w * fn(a)))(a)

    z_b, g_b = value_and_grad(lambda a: ber(key, a, 1.0, 0.7))
    z_c, g_c = value_and_grad(lambda a: cat(key, jnp.stack([0 * a, a], -1), 1.0, 0.7)[..., 1])
    np.testing.assert_array_equal(z_b, z_c)
    assert 0.1 < float(z_b.mean()) < 0.9
    np.testing.assert_allclose(g_b, g_c, rtol=1e-9, atol=1e-12)
    if name != "rloo":
        assert np.all(np.isfinite(g_b)) and np.any(g_b != 0)


EXTREME = jnp.array([[[-50.0, 50.0, 0.0, 49.0], [50.0, -50.0, -49.5, 49.0], [0.1, -0.1, 0.0, 0.0]]])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("name", NEW)
def test_extremes_are_finite(name, dtype):
    logits = EXTREME.astype(dtype)
    ct = jax.random.normal(jax.random.key(9), logits.shape, dtype)
    for tau in (1e-3, 1e3, 1e6):
        z, vjp = jax.vjp(lambda l, t=tau: C.get(name)(jax.random.key(1), l, 1.0, t), logits)
        g = vjp(ct)[0]
        assert z.dtype == dtype and g.dtype == dtype and g.shape == logits.shape
        np.testing.assert_array_equal(np.asarray(z, np.float32).sum(-1), 1.0)
        assert np.all(np.isfinite(np.asarray(g, np.float32))), tau


@pytest.mark.parametrize("name", NEW)
def test_bad_temperature_names_the_argument(name):
    if name == "zgr":
        with pytest.raises(TypeError):
            R.zgr(jax.random.key(0), jnp.zeros((2, 3)), 1.0)  # ZGR takes no temperature
        return
    with pytest.raises(ValueError, match=r"^tau must be a positive finite number, got 0.0"):
        getattr(R, name)(jax.random.key(0), jnp.zeros((2, 3)), 0.0)


def test_static_options_are_checked():
    key, l = jax.random.key(0), jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="gap"):
        R.gapped_st(key, l, 1.0, gap=0.0)
    with pytest.raises(ValueError, match="integer k >= 1"):
        R.reinmax_cv(key, l, 1.0, k=0)
    with pytest.raises(ValueError, match="eta"):
        R.reinmax_cv(key, l, 1.0, eta="1.5")
    # A gap other than the published 1.0 changes the backward, and leaves the given-sample form.
    g1 = jax.grad(lambda l: R.gapped_st(key, l, 1.0)[..., 0].sum())(jnp.array([[1.0, 0.8, 0.0]]))
    g3 = jax.grad(lambda l: R.gapped_st(key, l, 1.0, gap=3.0)[..., 0].sum())(
        jnp.array([[1.0, 0.8, 0.0]])
    )
    assert not np.allclose(g1, g3)
    assert E.REGISTRY["gapped_st"].given_sample_form(gap=3.0) is None
    assert E.REGISTRY["gapped_st"].given_sample_form() is not None


def test_registry_entries():
    temps = {n: E.REGISTRY[n].temperatures_of(0.4) for n in SAMPLING}
    assert temps == {
        "zgr": (1.0, 1.0),
        "mve": (1.0, 0.4),
        "gapped_st": (1.0, 0.4),
        "reinmax_cv": (1.0, 0.4),
        "rloo": (1.0, 1.0),
    }
    given = {n for n in SAMPLING if E.REGISTRY[n].given_sample is not None}
    assert given == {"zgr", "mve", "gapped_st"}
    assert [n for n in E.REGISTRY.names() if E.REGISTRY[n].score_function] == ["rloo"]
    assert E.bernoulli_name("reinmax_cv") == "reinmax_cv_bernoulli"


# ----------------------------------------------------------------------------------------------
# Transforms.


@pytest.mark.parametrize("name", NEW)
def test_jit_vmap_over_temperatures_and_scan(name):
    fn = C.get(name)
    key = jax.random.key(3)
    logits = 2.0 * jax.random.normal(jax.random.key(4), (2, 3, 5))
    w = jax.random.normal(jax.random.key(5), logits.shape)

    def loss(l, tb):
        return jnp.sum(w * fn(key, l, 1.0, tb))

    taus = jnp.array([0.5, 1.0, 2.0])
    grads = jax.jit(jax.vmap(jax.grad(loss), (None, 0)))(logits, taus)
    eager = jnp.stack([jax.grad(loss)(logits, t) for t in taus])
    chex.assert_trees_all_close(grads, eager, rtol=1e-5, atol=1e-6)

    def step(l, k):
        g = jax.grad(lambda l: jnp.sum(w * fn(k, l, 1.0, 0.7)))(l)
        return l - 0.1 * g, None

    out, _ = jax.lax.scan(step, logits, jax.random.split(key, 4))
    assert out.shape == logits.shape and bool(jnp.all(jnp.isfinite(out)))
    assert not np.allclose(out, logits)


# ----------------------------------------------------------------------------------------------
# RLOO.


def test_rloo_surrogate_is_exactly_unbiased_by_enumeration(x64):
    """Over every tuple of S = 3 samples of a 4-class categorical, the probability-weighted mean
    of the RLOO gradient is the exact gradient of E_q[f], q = softmax(l)."""
    l = jnp.array([0.5, -0.2, 1.0, 0.1], jnp.float64)
    f_of = jnp.array([3.0, -1.0, 0.5, 2.2], jnp.float64)  # f(z) for each class
    q = np.asarray(jax.nn.softmax(l))
    exact = jax.grad(lambda l: jnp.sum(jax.nn.softmax(l) * f_of))(l)
    total = np.zeros(4)
    for xs in itertools.product(range(4), repeat=3):
        xs = jnp.array(xs)

        def surrogate(l, xs=xs):
            return R.rloo_surrogate(f_of[xs], jax.nn.log_softmax(l)[xs])

        total += np.prod(q[np.asarray(xs)]) * np.asarray(jax.grad(surrogate)(l))
    np.testing.assert_allclose(total, exact, rtol=1e-12, atol=1e-14)


def test_rloo_gradient_mean_is_the_exact_gradient_within_its_error():
    """`rloo_gradient` on two latents (L, C) = (2, 3) with a non-linear f: the mean of 4,000
    estimates lies within 5 standard errors of the exact gradient, entry by entry."""
    l = jnp.array([[0.5, -0.2, 1.0], [0.0, 0.3, -0.4]])
    table = jax.random.normal(jax.random.key(1), (3, 3))

    def f(z):
        return jnp.einsum("i,ij,j->", z[0], table, z[1]) ** 2

    q = jax.nn.softmax(l)
    exact = jax.grad(lambda l: jnp.einsum("i,j,ij->", *jax.nn.softmax(l), table**2))(l)
    del q
    keys = jax.random.split(jax.random.key(2), 4000)
    grads = np.asarray(jax.vmap(lambda k: R.rloo_gradient(k, l, f, 4))(keys))
    mean, se = grads.mean(0), grads.std(0, ddof=1) / np.sqrt(len(grads))
    np.testing.assert_array_less(np.abs(mean - np.asarray(exact)), 5 * se + 1e-6)
    assert np.all(se > 0)


def test_rloo_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        R.rloo_surrogate(jnp.ones((1, 3)), jnp.zeros((1, 3)))


def test_zgr_equals_reinmax_at_temperature_one(x64):
    """For a one-hot D, 2 J((p + D)/2) - J(p)/2 = (J(p) + (D - p)(D - p)^T)/2 (diag(D) = D D^T):
    ReinMax at tau = 1 is ZGR, value and gradient, for the same key."""
    k1, k2, key = jax.random.split(jax.random.key(6), 3)
    l = 1.5 * jax.random.normal(k1, (8, 5), jnp.float64)
    v = jax.random.normal(k2, (8, 5), jnp.float64)
    z, vjp = jax.vjp(lambda l: R.zgr(key, l), l)
    z_r, vjp_r = jax.vjp(lambda l: E.reinmax(key, l, 1.0), l)
    np.testing.assert_array_equal(z, z_r)
    np.testing.assert_allclose(vjp(v)[0], vjp_r(v)[0], rtol=1e-12, atol=1e-14)
