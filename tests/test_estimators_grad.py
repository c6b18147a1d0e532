"""Backward passes of `dst_jax.estimators` against analytic Jacobians, the identities between
estimators, and the JAX transforms (jit, grad, vmap, scan, checkpoint, no re-tracing)."""

import chex
import estimator_calls as C  # tests/estimator_calls.py
import jax
import jax.numpy as jnp
import numpy as np
import published_estimators as P  # tests/published_estimators.py
import pytest
from absl.testing import parameterized

from dst_jax import estimators as E
from dst_jax.estimators import noise

CATEGORICAL = list(E.CATEGORICAL)
BERNOULLI = list(E.BERNOULLI)
NAMES = CATEGORICAL + BERNOULLI
# Every function, and both backward_noise settings of the decoupled ones.
CASES = [(n, False) for n in NAMES] + [("decoupled_st", True), ("decoupled_st_bernoulli", True)]


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.linalg.norm(got - want) / np.linalg.norm(want)


# ----------------------------------------------------------------------------------------------
# Backward = analytic Jacobian product (float64).


def softmax_np(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid_np(s):
    return 1.0 / (1.0 + np.exp(-s))


def jacobian_at(p):
    """J(p)[..., i, j] = p_i delta_ij - p_i p_j, the full K x K matrix."""
    return np.einsum("...i,ij->...ij", p, np.eye(p.shape[-1])) - p[..., :, None] * p[..., None, :]


def analytic(name, backward_noise, key, l, tau_f, tau_b):
    """(forward value, full matrix M of the VJP v -> v M) from DESIGN.md, built in numpy.

    Single-temperature estimators get tau from the field the uniform form reads: tau_f for the
    paper's three, tau_b for ReinMax and Gumbel-Rao. A Bernoulli form is the categorical one on
    the logits (0, a): its value and its (1, 1) entry.
    """
    entry, form = E.lookup(name)
    if form == "bernoulli":
        z, M = analytic(entry.name, backward_noise, key, np.stack([0 * l, l], -1), tau_f, tau_b)
        return z[..., 1], M[..., 1, 1]
    name = entry.name
    tau = tau_b if entry.n_temperatures == 1 and entry.writes_tau_to[0] == "tau_b" else tau_f
    g = np.asarray(noise._gumbel_noise(key, l.shape, jnp.float64))
    at_one = name in ("st_gumbel_softmax", "reinmax", "gumbel_rao")
    z = np.eye(l.shape[-1])[(l + g if at_one else l / tau_f + g).argmax(-1)]
    if name == "identity_ste":
        return z, np.broadcast_to(np.eye(l.shape[-1]), l.shape + l.shape[-1:])
    if name == "decoupled_st":
        return z, jacobian_at(softmax_np(l / tau_b + g * backward_noise)) / tau_b
    if name == "softmax_ste":
        return z, jacobian_at(softmax_np(l / tau)) / tau
    if name == "st_gumbel_softmax":
        return z, jacobian_at(softmax_np((l + g) / tau)) / tau
    if name in ("reinmax", "decoupled_reinmax"):
        t_f, t_b = (1.0, tau) if name == "reinmax" else (tau_f, tau_b)
        pi0, pi1 = softmax_np(l / t_f), (softmax_np(l / t_b) + z) / 2
        return z, (2 * jacobian_at(pi1) - 0.5 * jacobian_at(pi0)) / t_f
    if name == "gumbel_rao":
        # The conditional draws, rebuilt from the same derived key: the backward with them fixed.
        index = jnp.asarray(z.argmax(-1))
        z_k = np.asarray(E.conditional_gumbel(noise._rao_key(key), jnp.asarray(l), index, 10))
        return z, jacobian_at(softmax_np(z_k / tau)).mean(0) / tau
    raise AssertionError(f"no analytic form for {name}")


@pytest.mark.parametrize("name,backward_noise", CASES)
def test_vjp_matches_analytic_jacobian(x64, name, backward_noise):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    shape = (3, 5)  # 3 categoricals of 5 classes, or 3 x 5 Bernoulli units
    l = 1.5 * jax.random.normal(k1, shape, jnp.float64)
    v = jax.random.normal(k2, shape, jnp.float64)
    tau_f, tau_b = jnp.float64(0.7), jnp.float64(1.9)
    fn = C.get(name, **({"backward_noise": True} if backward_noise else {}))
    z, vjp = jax.vjp(lambda l, tf, tb: fn(k3, l, tf, tb), l, tau_f, tau_b)
    ct_l, ct_tf, ct_tb = vjp(v)

    z_want, J = analytic(name, backward_noise, k3, np.asarray(l), 0.7, 1.9)
    np.testing.assert_array_equal(z, z_want)  # the backward used the forward's noise
    if name in CATEGORICAL:
        want = np.einsum("...i,...ij->...j", np.asarray(v), J)  # v^T M
    else:
        want = np.asarray(v) * J
    assert ct_l.dtype == jnp.float64
    assert rel_err(ct_l, want) < 1e-9
    # Temperatures are hyperparameters: zero cotangent of their shape and dtype.
    for ct in (ct_tf, ct_tb):
        assert ct.shape == () and ct.dtype == jnp.float64 and ct == 0.0


# ----------------------------------------------------------------------------------------------
# Given-sample forms (the backward applied to a sample drawn elsewhere).

GIVEN_SAMPLE = [e.name for e in E.REGISTRY if e.given_sample is not None]


@pytest.mark.parametrize("name", GIVEN_SAMPLE)
@pytest.mark.parametrize("tau_f,tau_b", [(0.7, 1.9), (0.1, 5.0), (3.0, 0.2)])
def test_given_sample_form_equals_the_estimator(x64, name, tau_f, tau_b):
    """straight_through(d, l, tau_f, tau_b) with d the Gumbel-max sample of the same key at
    forward_tau(tau_f, tau_b) equals the estimator: value and gradient exactly (float64), and
    so does `sampled("gumbel")`, the composed form the dlgn task trains with."""
    k1, k2, key = jax.random.split(jax.random.key(12), 3)
    l = 2.0 * jax.random.normal(k1, (6, 5), jnp.float64)
    v = jax.random.normal(k2, (6, 5), jnp.float64)
    entry = E.REGISTRY[name]
    given = entry.given_sample
    d = E.sample_gumbel_max(key, l, given.forward_tau(tau_f, tau_b))

    def value_and_vjp(fn):
        z, vjp = jax.vjp(fn, l)
        return z, vjp(v)[0]

    want = value_and_vjp(lambda l: C.get(name)(key, l, tau_f, tau_b))
    got = value_and_vjp(lambda l: given.straight_through(d, l, tau_f, tau_b))
    composed = value_and_vjp(lambda l: C.sampled(entry, "gumbel")(key, l, tau_f, tau_b))
    assert want[1].dtype == jnp.float64 and np.any(np.asarray(want[1]) != 0)
    chex.assert_trees_all_equal(got, want)
    chex.assert_trees_all_equal(composed, want)


@pytest.mark.parametrize("name", GIVEN_SAMPLE)
def test_inverse_cdf_sampled_backward_is_the_surrogate_at_its_sample(x64, name):
    """`sampled("inverse_cdf")`: the forward is `sample_inverse_cdf(key, l, forward_tau)` and
    the VJP the analytic surrogate of DESIGN.md at that sample (float64)."""
    k1, k2, key = jax.random.split(jax.random.key(13), 3)
    l = 1.5 * jax.random.normal(k1, (4, 6), jnp.float64)
    v = jax.random.normal(k2, (4, 6), jnp.float64)
    entry = E.REGISTRY[name]
    z, vjp = jax.vjp(lambda l: C.sampled(entry, "inverse_cdf")(key, l, 0.7, 1.9), l)
    d = E.sample_inverse_cdf(key, l, entry.given_sample.forward_tau(0.7, 1.9))
    np.testing.assert_array_equal(z, d)
    l_np = np.asarray(l)
    if name == "decoupled_st":
        m = jacobian_at(softmax_np(l_np / 1.9)) / 1.9
    elif name == "softmax_ste":  # its tau is read from tau_f
        m = jacobian_at(softmax_np(l_np / 0.7)) / 0.7
    elif name == "identity_ste":
        m = np.broadcast_to(np.eye(6), (4, 6, 6))
    elif name in ("zgr", "mve", "gapped_st"):  # published formulas; their tau is tau_b
        ref = {"zgr": lambda l, d: P.zgr(l, d), "mve": lambda l, d: P.mve(l, d, 1.9)}
        ref["gapped_st"] = lambda l, d: P.gapped_st(l, d, 1.9)
        m = np.stack([ref[name](li, di) for li, di in zip(l_np, np.asarray(d), strict=True)])
    else:
        t_f, t_b = (1.0, 1.9) if name == "reinmax" else (0.7, 1.9)
        pi0, pi1 = softmax_np(l_np / t_f), (softmax_np(l_np / t_b) + d) / 2
        m = (2 * jacobian_at(pi1) - 0.5 * jacobian_at(pi0)) / t_f
    want = np.einsum("...i,...ij->...j", np.asarray(v), m)
    assert rel_err(vjp(v)[0], want) < 1e-9


def test_inverse_cdf_sampled_under_jit_and_vmap_over_temperatures():
    """A grid of (tau_f, tau_b) is one vmapped program; each entry equals its own call."""
    fn = E.REGISTRY["decoupled_st"].sampled("inverse_cdf")
    l = jax.random.normal(jax.random.key(14), (50, 16))
    w = jnp.arange(16.0)

    def loss_and_grad(key, tau_f, tau_b):
        return jax.value_and_grad(lambda l: jnp.sum(w * fn(key, l, tau_f, tau_b)))(l)

    keys = jax.random.split(jax.random.key(15), 3)
    tf, tb = jnp.array([0.1, 1.0, 5.0]), jnp.array([2.0, 0.5, 1.0])
    got = jax.jit(jax.vmap(loss_and_grad))(keys, tf, tb)
    for i in range(3):
        want = loss_and_grad(keys[i], tf[i], tb[i])
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], got), want, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Identities.


def value_and_grad(fn, key, logits, ct):
    z, vjp = jax.vjp(lambda l: fn(key, l), logits)
    return z, vjp(ct)[0]


@pytest.mark.parametrize("tau", [0.3, 2.0])
def test_single_temperature_estimators_are_their_decoupled_forms(tau):
    """softmax_ste(l, tau) == decoupled_st(l, tau, tau) and reinmax(l, tau) ==
    decoupled_reinmax(l, 1, tau), value and gradient, exactly, in both forms."""
    key, k1 = jax.random.split(jax.random.key(1))
    for single, decoupled, tau_f in [
        (E.softmax_ste, E.decoupled_st, tau),
        (E.sigmoid_ste, E.decoupled_st_bernoulli, tau),
        (E.reinmax, E.decoupled_reinmax, 1.0),
        (E.reinmax_bernoulli, E.decoupled_reinmax_bernoulli, 1.0),
    ]:
        categorical = E.lookup(single.__name__)[1] == "categorical"
        l = 2.0 * jax.random.normal(k1, (2, 3, 4) if categorical else (2, 3))
        got = value_and_grad(lambda k, l, f=single: f(k, l, tau), key, l, l)
        want = value_and_grad(lambda k, l, f=decoupled, t=tau_f: f(k, l, t, tau), key, l, l)
        chex.assert_trees_all_equal(got, want)


@pytest.mark.parametrize(
    "family,backward_noise", [(f, False) for f in E.CATEGORICAL] + [("decoupled_st", True)]
)
def test_bernoulli_is_categorical_on_zero_and_a(x64, family, backward_noise):
    """With logits [0, a], softmax(./t)[1] = sigmoid(a/t). With the same key the Bernoulli noise
    L is the categorical's g1 - g0, so the samples coincide exactly (same law, a fortiori), and
    the gradient w.r.t. a for a cotangent w equals the categorical one for cotangent [0, w]."""
    options = {"backward_noise": True} if backward_noise else {}
    cat = C.get(family, **options)
    ber = C.get(E.bernoulli_name(family), **options)
    k1, k2, key = jax.random.split(jax.random.key(2), 3)
    a = 1.5 * jax.random.normal(k1, (500,), jnp.float64)
    w = jax.random.normal(k2, a.shape, jnp.float64)
    for tau_f, tau_b in [(0.5, 2.0), (3.0, 0.4)]:
        z_b, g_b = value_and_grad(lambda k, a, tf=tau_f, tb=tau_b: ber(k, a, tf, tb), key, a, w)
        z_c, g_c = value_and_grad(
            lambda k, a, tf=tau_f, tb=tau_b: cat(k, jnp.stack([0 * a, a], -1), tf, tb)[..., 1],
            key,
            a,
            w,
        )
        np.testing.assert_array_equal(z_b, z_c)
        assert 0.1 < float(z_b.mean()) < 0.9  # both outcomes occur: the comparison has teeth
        np.testing.assert_allclose(g_b, g_c, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Transforms (float32).


def setup_case(name, batch=(2, 3)):
    k1, k2 = jax.random.split(jax.random.key(3))
    shape = (*batch, 4) if name in CATEGORICAL else batch  # K = 4 classes
    logits = 2.0 * jax.random.normal(k1, shape)
    weights = jax.random.normal(k2, shape)  # a loss that sees every entry
    return logits, weights


def loss_and_grad(name, backward_noise=False):
    """(key, logits, w, tau_f, tau_b) -> (sample, d sum(w * sample) / d logits)."""
    fn = C.get(name, **({"backward_noise": True} if backward_noise else {}))

    def run(key, logits, w, tau_f, tau_b):
        z, vjp = jax.vjp(lambda l: fn(key, l, tau_f, tau_b), logits)
        return z, vjp(w)[0]

    return run


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*NAMES)
    def test_jit_equals_eager_and_does_not_retrace(self, name):
        logits, w = setup_case(name)
        key = jax.random.key(4)
        want = loss_and_grad(name)(key, logits, w, 0.7, 1.3)
        run = loss_and_grad(name)
        if self.variant.type is chex.ChexVariantType.WITH_JIT:
            # New temperature values are new array arguments, not new programs.
            chex.clear_trace_counter()
            run = chex.assert_max_traces(run, n=1)
        run = self.variant(run)
        for tau_f, tau_b in [(0.7, 1.3), (0.2, 4.0), (3.0, 0.5)]:
            got = run(key, logits, w, tau_f, tau_b)
            if (tau_f, tau_b) == (0.7, 1.3):
                chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)
            chex.assert_tree_all_finite(got)


@pytest.mark.slow
@pytest.mark.parametrize("name,backward_noise", CASES)
def test_vmap_equals_python_loop(name, backward_noise):
    """vmap over keys, over logits, over tau_f and over tau_b, each alone, equals a loop."""
    run = loss_and_grad(name, backward_noise)
    logits, w = setup_case(name, batch=(3, 2))  # 3 mapped entries of batch shape (2,)
    keys = jax.random.split(jax.random.key(5), 3)
    taus = jnp.array([0.3, 1.0, 2.5])
    key, l, ww = keys[0], logits[0], w[0]
    batched = {
        "keys": ((keys, l, ww, 0.8, 1.4), (0, None, None, None, None)),
        "logits": ((key, logits, w, 0.8, 1.4), (None, 0, 0, None, None)),
        "tau_f": ((key, l, ww, taus, 1.4), (None, None, None, 0, None)),
        "tau_b": ((key, l, ww, 0.8, taus), (None, None, None, None, 0)),
    }
    for what, (args, in_axes) in batched.items():
        got = jax.vmap(run, in_axes)(*args)
        for i in range(3):
            one = [a if axis is None else a[i] for a, axis in zip(args, in_axes, strict=True)]
            got_i = jax.tree.map(lambda x, i=i: x[i], got)
            chex.assert_trees_all_close(got_i, run(*one), rtol=1e-6, atol=1e-7, custom_message=what)


@pytest.mark.parametrize("name", ["decoupled_st", "decoupled_st_bernoulli"])
def test_scan_matches_loop(name):
    """A lax.scan of noisy-backward estimator steps (fresh key per step) equals the loop."""
    run = loss_and_grad(name, backward_noise=True)
    logits, w = setup_case(name)
    keys = jax.random.split(jax.random.key(6), 4)
    taus = jnp.array([[0.5, 2.0], [1.0, 1.0], [2.0, 0.5], [0.3, 0.3]])

    def step(total, xs):
        key, tau = xs
        z, g = run(key, logits, w, tau[0], tau[1])
        return total + g, z

    total, zs = jax.lax.scan(step, jnp.zeros_like(logits), (keys, taus))
    loop = [run(k, logits, w, t[0], t[1]) for k, t in zip(keys, taus, strict=True)]
    chex.assert_trees_all_close(zs, jnp.stack([z for z, _ in loop]))
    chex.assert_trees_all_close(total, sum(g for _, g in loop), rtol=1e-6, atol=1e-6)


# One estimator per backward rule (softmax, sigmoid, identity): under jax.checkpoint each is
# compiled whole, random number generator included, which is what costs.
@pytest.mark.parametrize("name", ["decoupled_st", "decoupled_st_bernoulli", "identity_ste"])
def test_checkpoint_gives_the_same_gradient(name):
    logits, w = setup_case(name)
    fn, key = C.get(name), jax.random.key(7)

    def loss(l):
        return jnp.sum(w * jnp.tanh(fn(key, l * 1.5, 0.6, 1.6) + l))

    g_plain = jax.grad(loss)(logits)
    g_remat = jax.grad(jax.checkpoint(loss))(logits)
    chex.assert_trees_all_close(g_remat, g_plain, rtol=1e-6, atol=1e-7)
    assert np.any(np.asarray(g_plain) != 0)


def test_relaxation_is_softmax_with_its_jacobian(x64):
    l = jax.random.normal(jax.random.key(8), (3, 5), jnp.float64)
    v = jax.random.normal(jax.random.key(9), (3, 5), jnp.float64)
    z, vjp = jax.vjp(lambda l: E.softmax_relaxation(jax.random.key(0), l), l)
    p = softmax_np(np.asarray(l))
    np.testing.assert_allclose(z, p, rtol=1e-12)
    want = np.einsum("...i,...ij->...j", np.asarray(v), jacobian_at(p))
    assert rel_err(vjp(v)[0], want) < 1e-12
    a = l[:, 0]
    np.testing.assert_allclose(E.sigmoid_relaxation(None, a), sigmoid_np(np.asarray(a)), rtol=1e-12)


@pytest.mark.slow
def test_gumbel_rao_backward_is_less_noisy_than_st_gumbel_softmax():
    """Rao-Blackwellisation: over keys, the spread of the gradient of a linear loss shrinks as k
    grows (k = 1 is ST Gumbel-softmax's spread up to the draw), while its mean stays put."""
    l = jnp.array([1.0, 0.0, -0.5, 0.3])
    w = jnp.array([1.0, -2.0, 0.5, 3.0])
    keys = jax.random.split(jax.random.key(10), 4000)

    def grads(k):
        g = jax.grad(lambda l, key: (E.gumbel_rao(key, l, 0.5, k=k) * w).sum())
        return np.asarray(jax.vmap(g, (None, 0))(l, keys))

    g1, g20 = grads(1), grads(20)
    assert np.linalg.norm(g20.std(0)) < 0.6 * np.linalg.norm(g1.std(0))
    sem = np.sqrt(g1.var(0) / len(keys))
    np.testing.assert_array_less(np.abs(g20.mean(0) - g1.mean(0)), 5 * sem + 1e-6)
