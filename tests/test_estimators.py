"""Forward laws, dtypes, shapes, extremes and input checks of `dst_jax.estimators`.

Gradients (against analytic Jacobians in float64), the Bernoulli/categorical identities and the
JAX transforms are in test_estimators_grad.py.
"""

import functools

import estimator_calls as C  # tests/estimator_calls.py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dst_jax
from dst_jax import estimators as E
from dst_jax.estimators import samplers

CATEGORICAL = list(E.CATEGORICAL)
BERNOULLI = list(E.BERNOULLI)
NAMES = CATEGORICAL + BERNOULLI


def entry(name):
    return E.lookup(name)[0]


TWO_TEMPERATURES = [n for n in NAMES if entry(n).n_temperatures == 2]
# Forward at temperature 1 whatever tau.
TAU_FREE_FORWARD = [
    n for n in NAMES if entry(n).name in ("st_gumbel_softmax", "reinmax", "gumbel_rao")
]

LOGITS_K = jnp.array([0.5, 0.2, -0.3, 0.0])  # one categorical over 4 classes
LOGITS_A = jnp.array([-1.0, -0.2, 0.0, 0.4, 1.5])  # 5 Bernoulli units
N = 20_000  # samples per frequency estimate


def sample(name, key, logits, tau_f, tau_b=1.0):
    return C.get(name)(key, logits, tau_f, tau_b)


def logits_for(name, batch, dtype=jnp.float32, seed=1):
    shape = (*batch, 4) if name in CATEGORICAL else batch
    return (2.0 * jax.random.normal(jax.random.key(seed), shape)).astype(dtype)


# The tests run eagerly on a few shared shapes: each jit-compiled program that draws random
# numbers costs about a CPU second to compile on XLA:CPU, while eagerly the noise draw is one
# cached program per shape, shared by all eight estimators. test_estimators_grad.py covers jit.

# (tau_f, tau_b) pairs sampled: the three laws DESIGN.md states, two more forward temperatures to
# compare, and tau_b varied at fixed tau_f.
TAU_PAIRS = [(0.1, 1.0), (1.0, 1.0), (5.0, 1.0), (0.5, 1.0), (2.0, 1.0), (1.0, 0.1)]


@functools.cache
def samples(name, seed=0):
    """(len(TAU_PAIRS), N, ...) samples of LOGITS_K / LOGITS_A repeated N times, one key."""
    base = LOGITS_K if name in CATEGORICAL else LOGITS_A
    logits = jnp.broadcast_to(base, (N, *base.shape))
    key = jax.random.key(seed)
    return np.stack([np.asarray(sample(name, key, logits, tf, tb)) for tf, tb in TAU_PAIRS])


def law(name, tau_f):
    tau = 1.0 if name in TAU_FREE_FORWARD else tau_f
    if name in CATEGORICAL:
        return np.asarray(jax.nn.softmax(LOGITS_K / tau), np.float64)
    return np.asarray(jax.nn.sigmoid(LOGITS_A / tau), np.float64)


def value_and_vjp(name):
    """(key, logits, tau_f, tau_b, cotangent) -> (sample, cotangent for the logits)."""
    fn = C.get(name)

    def run(key, logits, tau_f, tau_b, ct):
        z, vjp = jax.vjp(lambda l: fn(key, l, tau_f, tau_b), logits)
        return z, vjp(ct)[0]

    return run


# ----------------------------------------------------------------------------------------------
# Forward laws.


@pytest.mark.parametrize("name", NAMES)
def test_forward_frequencies_match_tempered_law(name):
    """Frequencies of N samples within 5 binomial sigma of softmax(l/tau_f) / sigmoid(a/tau_f)
    (of softmax(l) / sigmoid(a) for st_gumbel_*), for tau_f in {0.1, 1, 5}."""
    z = samples(name)
    for i, tau_f in enumerate((0.1, 1.0, 5.0)):
        assert TAU_PAIRS[i][0] == tau_f
        freq, p = z[i].mean(0), law(name, tau_f)
        sigma = np.sqrt(p * (1 - p) / N)
        np.testing.assert_array_less(np.abs(freq - p), 5 * sigma + 1e-12, err_msg=f"{tau_f=}")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in TAU_FREE_FORWARD])
def test_forward_law_depends_on_tau_f(name):
    f1, f2 = samples(name)[3].mean(0), samples(name)[4].mean(0)  # tau_f = 0.5 and 2.0
    p1, p2 = law(name, 0.5), law(name, 2.0)
    sigma = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / N)
    assert np.max(np.abs(f1 - f2) / sigma) > 10


@pytest.mark.parametrize("name", NAMES)
def test_forward_sample_ignores_the_temperatures_it_should(name):
    """st_gumbel_* ignore tau in the forward; the others ignore tau_b there (same key)."""
    z = samples(name)
    np.testing.assert_array_equal(z[5], z[1])  # tau_b = 0.1 vs 1.0 at tau_f = 1
    if name in TAU_FREE_FORWARD:
        for i in range(1, len(TAU_PAIRS)):
            np.testing.assert_array_equal(z[i], z[0])
    else:
        assert not np.array_equal(z[0], z[2])


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_key(name):
    np.testing.assert_array_equal(samples(name, seed=0), samples.__wrapped__(name, seed=0))
    assert not np.array_equal(samples(name, seed=1), samples(name, seed=0))


def test_deterministic_forms():
    l = jnp.array([[0.1, 2.0, -1.0], [3.0, 3.5, 0.0]], jnp.bfloat16)
    z = E.argmax_one_hot(l)
    assert z.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(z, np.float32), [[0, 1, 0], [0, 1, 0]])
    a = jnp.array([-0.5, 0.0, 0.25])
    np.testing.assert_array_equal(E.bernoulli_mode(a), [0.0, 0.0, 1.0])
    assert E.bernoulli_mode(a).dtype == a.dtype
    # Evaluation forms carry no gradient.
    w = jnp.array([1.0, 2.0, 3.0], jnp.bfloat16)
    np.testing.assert_array_equal(jax.grad(lambda l: (E.argmax_one_hot(l) * w).sum())(l), 0.0)
    np.testing.assert_array_equal(jax.grad(lambda a: E.bernoulli_mode(a).sum())(a), 0.0)


def test_package_reexports():
    for name in NAMES:
        assert getattr(dst_jax, name) is getattr(E, name)
    assert dst_jax.estimators is E


# ----------------------------------------------------------------------------------------------
# Keys, dtypes, shapes.


@pytest.mark.parametrize("name", ["decoupled_st", "decoupled_st_bernoulli"])
def test_raw_and_typed_keys_give_the_same_sample(name):
    logits = logits_for(name, (2, 3))
    ct = jnp.ones_like(logits)
    z_typed, g_typed = value_and_vjp(name)(jax.random.key(4), logits, 0.8, 1.3, ct)
    z_raw, g_raw = value_and_vjp(name)(jax.random.PRNGKey(4), logits, 0.8, 1.3, ct)
    np.testing.assert_array_equal(z_typed, z_raw)
    np.testing.assert_array_equal(g_typed, g_raw)


@pytest.mark.parametrize("name", NAMES)
def test_key_cotangent_is_float0(name):
    """The key never enters the custom_vjp, so either key kind gets JAX's float0 cotangent."""
    logits = logits_for(name, (3,))
    for key in (jax.random.key(4), jax.random.PRNGKey(4)):

        def key_and_logit_cotangents(k, l):
            z, vjp = jax.vjp(lambda k, l: sample(name, k, l, 0.8, 1.3), k, l)
            return vjp(jnp.ones_like(z))

        ct_key, ct_logits = jax.eval_shape(key_and_logit_cotangents, key, logits)
        assert ct_key.dtype == jax.dtypes.float0 and ct_key.shape == key.shape
        assert ct_logits.shape == logits.shape


def check_shapes_and_dtypes(dtypes):
    for name in NAMES:
        for dtype in dtypes:
            for batch in [(), (3,), (2, 3)]:
                if name in CATEGORICAL and batch == ():
                    batch = (1,)  # a single categorical: logits (K,)
                shape = (*batch, 4) if name in CATEGORICAL else batch
                logits = jax.ShapeDtypeStruct(shape, dtype)
                z, ct = jax.eval_shape(
                    value_and_vjp(name), jax.random.key(0), logits, 0.5, 2.0, logits
                )
                assert (z.shape, z.dtype) == (shape, dtype), (name, shape, dtype)
                assert (ct.shape, ct.dtype) == (shape, dtype), (name, shape, dtype)


def test_shapes_and_dtypes_preserved():
    """Output and logits-gradient keep the logits' shape and dtype, for leading batch shapes
    (), (3,), (2, 3) (for categorical logits: (K,), (3, K), (2, 3, K))."""
    check_shapes_and_dtypes([jnp.bfloat16, jnp.float32])


def test_shapes_and_dtypes_preserved_float64(x64):
    check_shapes_and_dtypes([jnp.float64])


def test_per_example_temperatures_broadcast():
    """A temperature array that broadcasts to the logits acts per example."""
    logits = jnp.broadcast_to(LOGITS_K, (N, 4))
    tau_f = jnp.repeat(jnp.array([0.2, 5.0]), N // 2)[:, None]  # (N, 1): two halves
    z = np.asarray(E.decoupled_st(jax.random.key(0), logits, tau_f, 1.0))
    for half, tau in zip(np.split(z, 2), (0.2, 5.0), strict=True):
        p = np.asarray(jax.nn.softmax(LOGITS_K / tau))
        sigma = np.sqrt(p * (1 - p) / (N // 2))
        np.testing.assert_array_less(np.abs(half.mean(0) - p), 5 * sigma)


# ----------------------------------------------------------------------------------------------
# Concrete values at the extremes, in bfloat16 and float32.

EXTREME_LOGITS = jnp.array(
    [
        [[-50.0, 50.0, 0.0, 49.0], [50.0, -50.0, -49.5, 49.0], [0.1, -0.1, 0.0, 0.0]],
        [[50.0, 50.0, 50.0, 50.0], [-50.0, -50.0, -50.0, 40.0], [1.0, 2.0, 3.0, 4.0]],
    ]
)  # (2, 3, 4)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("name", NAMES)
def test_extremes_are_finite(name, dtype):
    """tau in {1e-3, 1e3}, |logits| up to 50: finite one-hot / {0, 1} values, finite gradients."""
    logits = EXTREME_LOGITS if name in CATEGORICAL else EXTREME_LOGITS[..., 0]
    logits = logits.astype(dtype)
    ct_out = jax.random.normal(jax.random.key(9), logits.shape, dtype)
    for tau_f in (1e-3, 1e3):
        for tau_b in (1e-3, 1e3):
            z, ct = value_and_vjp(name)(jax.random.key(1), logits, tau_f, tau_b, ct_out)
            assert z.dtype == dtype and ct.dtype == dtype
            z, ct = np.asarray(z, np.float32), np.asarray(ct, np.float32)
            assert set(np.unique(z)) <= {0.0, 1.0}
            if name in CATEGORICAL:
                np.testing.assert_array_equal(z.sum(-1), 1.0)
            assert np.all(np.isfinite(ct)), (tau_f, tau_b)
            if name in CATEGORICAL and name not in TAU_FREE_FORWARD and tau_f == 1e-3:
                # At tau_f = 1e-3 a logit gap of 1 is 1000 in scores: the sample is the mode.
                np.testing.assert_array_equal(z[0, :2], np.asarray(E.argmax_one_hot(logits))[0, :2])


# ----------------------------------------------------------------------------------------------
# Bad input.


def temperature_args(name):
    return ("tau_f", "tau_b") if name in TWO_TEMPERATURES else ("tau",)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("name", NAMES)
def test_bad_temperature_names_the_argument(name, bad):
    fn = getattr(E, name)
    logits = logits_for(name, (2,))
    key = jax.random.key(0)
    for arg in temperature_args(name):
        temps = {a: 1.0 for a in temperature_args(name)} | {arg: bad}
        with pytest.raises(ValueError, match=rf"^{arg} must be a positive finite number, got"):
            fn(key, logits, **temps)
        # Concrete numpy / jax arrays are checked as well.
        temps[arg] = jnp.array([1.0, bad]) if name in BERNOULLI else np.array(bad)
        with pytest.raises(ValueError, match=rf"^{arg} must"):
            fn(key, logits, **temps)


def test_temperature_of_wrong_shape():
    with pytest.raises(ValueError, match="tau_b of shape"):
        E.decoupled_st(jax.random.key(0), jnp.zeros((3, 4)), 1.0, jnp.ones(3))
    with pytest.raises(ValueError, match="tau of shape"):
        E.sigmoid_ste(jax.random.key(0), jnp.zeros(3), jnp.ones(2))


def test_check_temperatures():
    E.check_temperatures(tau_f=np.array([0.1, 5.0]), tau_b=jnp.array([[1e-3], [1e3]]), tau=2)
    with pytest.raises(ValueError, match=r"^tau_b must hold positive finite numbers, got \[0.0"):
        E.check_temperatures(tau_f=np.array([0.1, 5.0]), tau_b=np.array([1.0, 0.0, np.nan]))
    with pytest.raises(ValueError, match=r"^tau_f must be a positive finite number, got inf"):
        E.check_temperatures(tau_f=np.inf)
    with pytest.raises(ValueError, match="tau_f must be a real number"):
        E.check_temperatures(tau_f="1.0")
    with pytest.raises(ValueError, match="tau_f is traced"):
        jax.jit(lambda t: E.check_temperatures(tau_f=t))(1.0)


def test_traced_temperatures_compile_without_checks():
    """Under jit and vmap the value is unknown: the estimators skip the check and compile (the
    grid-level guard is check_temperatures)."""
    loss = lambda t: E.decoupled_st(jax.random.key(0), LOGITS_K, 1.0, t)[1]  # noqa: E731
    grads = jax.jit(jax.vmap(jax.grad(lambda t, l: loss(t) * l, argnums=1), (0, None)))(
        jnp.array([0.5, 2.0]), 1.0
    )
    np.testing.assert_array_equal(grads, 0.0)  # value of one entry of a sample: no tau gradient


@pytest.mark.parametrize("name", CATEGORICAL)
def test_categorical_refuses_scalar_logits(name):
    with pytest.raises(ValueError, match="needs logits with a category axis"):
        sample(name, jax.random.key(0), jnp.float32(1.0), 1.0)
    with pytest.raises(ValueError, match="empty category axis"):
        sample(name, jax.random.key(0), jnp.zeros((3, 0)), 1.0)
    with pytest.raises(ValueError, match="category axis"):
        E.argmax_one_hot(1.0)


@pytest.mark.parametrize("name", NAMES)
def test_integer_logits_refused(name):
    with pytest.raises(ValueError, match="logits must be a floating-point array"):
        sample(name, jax.random.key(0), jnp.ones((2, 3), jnp.int32), 1.0)


# ----------------------------------------------------------------------------------------------
# Lookup.


def test_get_uniform_form_matches_the_functions():
    key = jax.random.key(2)
    for name in NAMES:
        logits = logits_for(name, (2, 3))
        fn = getattr(E, name)
        if name in TWO_TEMPERATURES:
            direct = fn(key, logits, 0.4, 2.5)
        else:  # the uniform form reads tau from the first field it is written to
            direct = fn(key, logits, {"tau_f": 0.4, "tau_b": 2.5}[entry(name).writes_tau_to[0]])
        np.testing.assert_array_equal(C.get(name)(key, logits, 0.4, 2.5), direct)
        assert E.get(name) is E.get(name)
    noisy = E.get("decoupled_st", backward_noise=True)
    logits = logits_for("decoupled_st", (2, 3))
    g1 = jax.grad(lambda l: (noisy(key, l, 0.4, 2.5) * logits).sum())(logits)
    g2 = jax.grad(lambda l: (E.decoupled_st(key, l, 0.4, 2.5, True) * logits).sum())(logits)
    g3 = jax.grad(lambda l: (E.decoupled_st(key, l, 0.4, 2.5) * logits).sum())(logits)
    np.testing.assert_array_equal(g1, g2)
    assert not np.allclose(g1, g3)  # the noisy backward is a different gradient


def test_get_and_bernoulli_name_refuse_bad_names():
    with pytest.raises(ValueError, match="unknown estimator 'gumbel'"):
        E.get("gumbel")
    with pytest.raises(ValueError, match="softmax_ste takes no option backward_noise"):
        E.get("softmax_ste", backward_noise=True)
    with pytest.raises(ValueError, match="unknown estimator"):
        E.bernoulli_name("softmax")
    with pytest.raises(ValueError, match="form must be one of"):
        E.get("reinmax", "binary")


def test_bernoulli_name():
    assert [E.bernoulli_name(f) for f in CATEGORICAL] == [
        "decoupled_st_bernoulli",
        "sigmoid_ste",
        "st_gumbel_sigmoid",
        "identity_ste_bernoulli",
        "reinmax_bernoulli",
        "decoupled_reinmax_bernoulli",
        "gumbel_rao_bernoulli",
    ]
    assert [E.bernoulli_name(b) for b in BERNOULLI] == BERNOULLI
    assert E.NAMES == tuple(NAMES) and len(set(E.NAMES)) == 14


# ----------------------------------------------------------------------------------------------
# Temperature bounds and non-finite logits (the contract of the module docstring).


@pytest.mark.parametrize("tau", [1e-38, 1e-7, 1e7, 1e39])
def test_temperatures_outside_the_supported_range_are_refused(tau):
    with pytest.raises(ValueError, match=r"^tau_b must be a number in \[1e-06, 1e\+06\]"):
        E.decoupled_st(jax.random.key(0), LOGITS_K, 1.0, tau)
    with pytest.raises(ValueError, match="^tau_f must"):
        E.check_temperatures(tau_f=np.array([0.5, tau]))


def test_float16_needs_a_larger_minimum_temperature():
    a = jnp.array([0.0, 0.1], jnp.float16)
    with pytest.raises(ValueError, match=r"tau_b must be a number in \[0.0001"):
        E.decoupled_st_bernoulli(jax.random.key(0), a, 1.0, 1e-5)
    # At the bound the surrogate slope 1/(4 tau) = 2500 is finite in float16.
    g = jax.grad(lambda a: E.decoupled_st_bernoulli(jax.random.key(0), a, 1.0, 1e-4).sum())(a)
    assert g.dtype == jnp.float16 and np.all(np.isfinite(np.asarray(g, np.float32)))
    assert float(g[0]) == pytest.approx(2500.0, rel=1e-3)


BAD_ROWS = jnp.array(
    [
        [1.0, -jnp.inf, 0.0, 2.0],  # a masked class
        [jnp.inf, 0.0, jnp.inf, 1.0],  # two certain classes
        [jnp.nan, 0.0, 0.0, 0.0],  # NaN: no distribution
        [-jnp.inf] * 4,  # all masked: no distribution
    ]
)


@pytest.mark.parametrize("name", E.REGISTRY.names())
def test_non_finite_logits_contract(name):
    fn = C.get(name)
    w = jnp.arange(4.0)
    keys = jax.random.split(jax.random.key(3), 200)
    z = jax.vmap(lambda k: fn(k, BAD_ROWS, 0.5, 2.0))(keys)
    grads = jax.vmap(jax.grad(lambda l, k: (fn(k, l, 0.5, 2.0) * w).sum()), (None, 0))(
        BAD_ROWS, keys
    )
    # -inf masks its class: never chosen, zero gradient; the others' gradients are finite.
    assert np.all(z[:, 0, 1] == 0) and np.all(np.isfinite(grads[:, 0]))
    assert np.all(grads[:, 0, 1] == 0) or not entry(name).discrete or name == "identity_ste"
    # +inf classes are certain (both occur), and the row gets no gradient.
    assert np.all(z[:, 1, 1] == 0) and np.all(z[:, 1, 3] == 0)
    if entry(name).discrete:
        assert 0 < float(z[:, 1, 0].mean()) < 1
    if name != "identity_ste":
        np.testing.assert_array_equal(grads[:, 1], 0.0)
    # NaN or an all -inf row: NaN out.
    assert np.all(np.isnan(z[:, 2:]))


@pytest.mark.parametrize("name", BERNOULLI)
def test_bernoulli_non_finite_logits(name):
    a = jnp.array([jnp.inf, -jnp.inf, jnp.nan, 0.5])
    key = jax.random.key(1)
    z = C.get(name)(key, a, 0.5, 2.0)
    np.testing.assert_array_equal(z[:2], [1.0, 0.0])
    assert np.isnan(z[2]) and z[3] in (0.0, 1.0)
    g = jax.grad(lambda a: C.get(name)(key, a, 0.5, 2.0).sum())(a)
    if entry(name).name != "identity_ste":
        np.testing.assert_array_equal(g[:2], 0.0)
    assert np.isfinite(g[3])


# ----------------------------------------------------------------------------------------------
# Gumbel-Rao's conditional draws.


def test_conditional_gumbel_keeps_the_argmax_and_has_the_law_of_rejection_sampling():
    """z = l + h given argmax(z) = m: argmax kept always, and the mean of z matches plain Gumbel
    draws of l + g kept only when their argmax is m (rejection sampling), per class."""
    l = jnp.array([0.8, 0.0, -0.5, 1.2])
    n = 200_000
    g = jax.random.gumbel(jax.random.key(0), (n, 4)) + l
    for m in range(4):
        kept = np.asarray(g[np.asarray(g.argmax(-1)) == m])
        z = np.asarray(E.conditional_gumbel(jax.random.key(m + 1), l, jnp.array(m), 20_000))
        assert np.all(z.argmax(-1) == m)
        sem = np.sqrt(kept.var(0) / len(kept) + z.var(0) / len(z))
        np.testing.assert_array_less(np.abs(z.mean(0) - kept.mean(0)), 5 * sem)
        # Spread too: the conditional draws are not a point mass at the mean.
        np.testing.assert_allclose(z.std(0), kept.std(0), rtol=0.05)


def test_conditional_draws_stay_finite_over_millions_of_draws():
    """The exponentials behind the conditional draws are never 0 (which gave z = inf and a NaN
    gradient about once per 8 million float32 draws)."""
    l = jnp.zeros((16_384, 4))
    z = E.conditional_gumbel(jax.random.key(11), l, jnp.zeros(16_384, jnp.int32), 64)
    assert bool(jnp.isfinite(z).all())


def test_gumbel_rao_forward_is_st_gumbel_softmax():
    logits = 2.0 * jax.random.normal(jax.random.key(5), (50, 6))
    for seed in range(3):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(
            E.gumbel_rao(key, logits, 0.5), E.st_gumbel_softmax(key, logits, 0.5)
        )


def test_gumbel_rao_needs_a_static_positive_k():
    with pytest.raises(ValueError, match="k >= 1"):
        E.gumbel_rao(jax.random.key(0), LOGITS_K, 1.0, k=0)


# ----------------------------------------------------------------------------------------------
# The registry.


def test_registry_lists_every_estimator_once_with_its_temperatures():
    names = E.REGISTRY.names()
    assert len(set(names)) == len(names) == 13
    assert E.REGISTRY.names(discrete=False) == ("softmax_relaxation",)
    temps = {e.name: e.n_temperatures for e in E.REGISTRY}
    assert temps == {
        "decoupled_st": 2,
        "softmax_ste": 1,
        "st_gumbel_softmax": 1,
        "identity_ste": 1,
        "reinmax": 1,
        "decoupled_reinmax": 2,
        "gumbel_rao": 1,
        "softmax_relaxation": 0,
        # the newest studies' (tests in test_estimators_new.py)
        "zgr": 0,
        "mve": 1,
        "gapped_st": 1,
        "reinmax_cv": 1,
        "rloo": 0,
    }
    # Where a single temperature is recorded: both fields, or tau_b with the forward at 1.
    assert E.REGISTRY["softmax_ste"].temperatures_of(0.3) == (0.3, 0.3)
    assert E.REGISTRY["reinmax"].temperatures_of(0.3) == (1.0, 0.3)
    assert E.REGISTRY["softmax_relaxation"].temperatures_of(0.3) == (1.0, 1.0)


def test_a_scoped_registration_is_visible_then_gone():
    def toy(key, logits, tau):
        return E.softmax_ste(key, logits, tau)

    def toy_bernoulli(key, a, tau):
        return E.sigmoid_ste(key, a, tau)

    spec = E.Estimator("toy", toy, toy_bernoulli, writes_tau_to=("tau_b",), forward="tau_b")
    with E.REGISTRY.scoped(spec):
        assert "toy" in E.REGISTRY and E.lookup("toy_bernoulli") == (spec, "bernoulli")
        # The uniform form reads tau from tau_b, the field it is written to.
        z = E.get("toy")(jax.random.key(0), LOGITS_K, 1.0, 0.01)
        np.testing.assert_array_equal(z, E.argmax_one_hot(LOGITS_K))
        with pytest.raises(ValueError, match="toy reads one temperature, from tau_b"):
            E.get("toy")(jax.random.key(0), LOGITS_K, 123.0, 0.01)
        with pytest.raises(ValueError, match="already registered"):
            E.register(spec)
    assert "toy" not in E.REGISTRY
    with pytest.raises(ValueError, match="unknown estimator 'toy'"):
        E.get("toy")


def test_registry_refuses_inconsistent_entries():
    with pytest.raises(ValueError, match="different temperatures"):
        E.Estimator("bad", E.softmax_ste, E.decoupled_st_bernoulli)
    with pytest.raises(ValueError, match="writes_tau_to"):
        E.Estimator("bad", E.softmax_ste, E.sigmoid_ste, writes_tau_to=("tau",))


# ----------------------------------------------------------------------------------------------
# Samplers and given-sample forms.

GIVEN_SAMPLE = (
    "decoupled_st",
    "softmax_ste",
    "identity_ste",
    "reinmax",
    "decoupled_reinmax",
    "zgr",
    "mve",
    "gapped_st",
)
SAMPLER_TAUS = (0.1, 0.5, 1.0, 2.0, 5.0)
LOGITS_16 = jnp.linspace(-2.0, 1.5, 16)  # 16 classes, as a logic gate's


@functools.cache
def inverse_cdf_frequencies(seed=0):
    """(len(SAMPLER_TAUS), 16) frequencies of N inverse-CDF samples of LOGITS_16 per tau."""
    taus = jnp.asarray(SAMPLER_TAUS)[:, None, None]
    logits = jnp.broadcast_to(LOGITS_16, (len(SAMPLER_TAUS), N, 16))
    z = jax.jit(E.sample_inverse_cdf)(jax.random.key(seed), logits, taus)
    assert np.all(np.asarray(z).sum(-1) == 1)
    return np.asarray(z).mean(1)


@pytest.mark.parametrize("i", range(len(SAMPLER_TAUS)))
def test_inverse_cdf_frequencies_match_softmax(i):
    """Frequencies of N samples within 5 binomial sigma of softmax(l/tau) (16 classes)."""
    tau = SAMPLER_TAUS[i]
    p = np.asarray(jax.nn.softmax(LOGITS_16 / tau), np.float64)
    freq = inverse_cdf_frequencies()[i]
    sigma = np.sqrt(p * (1 - p) / N)
    np.testing.assert_array_less(np.abs(freq - p), 5 * sigma + 1e-12, err_msg=f"{tau=}")


def test_inverse_cdf_frequencies_depend_on_tau_and_key():
    f = inverse_cdf_frequencies()
    assert not np.array_equal(f[0], f[-1])
    assert not np.array_equal(inverse_cdf_frequencies(seed=1)[2], f[2])


@pytest.mark.parametrize("tau", [1e-3, 1.0, 1e3])
def test_samplers_give_valid_one_hots_at_the_extremes(tau):
    """|l| = 50 with ties, -inf masks and non-finite rows, tau from 1e-3 to 1e3: every valid
    row is one-hot, masked classes are never drawn, and ties are split between their classes."""
    rows = jnp.array(
        [
            [50.0, -50.0, 50.0, 0.0],  # a tie at the top
            [-50.0, 50.0, -jnp.inf, 49.9],  # a masked class next to the leader
            [-50.0, -50.0, -50.0, -50.0],  # all equal
            [0.0, -jnp.inf, -jnp.inf, -jnp.inf],  # one class possible
        ]
    )
    logits = jnp.broadcast_to(rows, (4000, 4, 4))
    for sampler in (E.sample_inverse_cdf, E.sample_gumbel_max):
        z = np.asarray(jax.jit(sampler)(jax.random.key(2), logits, tau))
        assert set(np.unique(z)) <= {0.0, 1.0} and np.all(z.sum(-1) == 1), sampler.__name__
        assert np.all(z[:, 1, 2] == 0) and np.all(z[:, 3, 0] == 1)
        freq = z.mean(0)
        if tau == 1e-3:  # the leaders only; the tie split about evenly
            np.testing.assert_array_equal(freq[0, [1, 3]], 0.0)
            assert 0.45 < freq[0, 0] < 0.55 and freq[1, 1] == 1.0
        if tau == 1e3:  # nearly uniform over the unmasked classes
            np.testing.assert_allclose(freq[0], 0.25, atol=0.04)
        np.testing.assert_allclose(freq[2], 0.25, atol=0.04)


def test_inverse_cdf_non_finite_rows_and_dtypes():
    z = E.sample_inverse_cdf(jax.random.key(0), BAD_ROWS, 0.5)
    np.testing.assert_array_equal(z[0, 1], 0.0)
    assert z[1, [0, 2]].sum() == 1 and z[1, [1, 3]].sum() == 0  # one of the certain classes
    assert np.all(np.isnan(z[2:]))
    for dtype in (jnp.bfloat16, jnp.float16, jnp.float32):
        z = E.sample_inverse_cdf(jax.random.key(0), LOGITS_K.astype(dtype), 0.5)
        assert z.dtype == dtype and float(z.astype(jnp.float32).sum()) == 1.0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gumbel_max_sampler_is_the_estimators_forward(dtype):
    """Bit for bit the sample of decoupled_st (tau_f) and of st_gumbel_softmax (tau = 1),
    ties and non-finite rows included."""
    logits = jnp.concatenate(
        [3.0 * jax.random.normal(jax.random.key(4), (500, 4)), BAD_ROWS, jnp.zeros((3, 4))]
    ).astype(dtype)

    def same(got, want):
        assert got.dtype == want.dtype == dtype
        # float32 copies: numpy's NaN-aware comparison does not know bfloat16.
        np.testing.assert_array_equal(np.float32(got), np.float32(want))

    for seed in range(3):
        key = jax.random.key(seed)
        for tau in (0.1, 1.0, 5.0):
            same(E.sample_gumbel_max(key, logits, tau), E.decoupled_st(key, logits, tau, 2.0))
        same(E.sample_gumbel_max(key, logits, 1.0), E.st_gumbel_softmax(key, logits, 0.3))


def test_registry_records_which_estimators_take_a_given_sample():
    have = tuple(e.name for e in E.REGISTRY if e.given_sample is not None)
    assert have == GIVEN_SAMPLE
    assert E.REGISTRY["decoupled_st"].given_sample_form(backward_noise=True) is None
    assert E.REGISTRY["reinmax"].given_sample.forward_tau(0.3, 0.7) == 1.0
    assert E.REGISTRY["decoupled_reinmax"].given_sample.forward_tau(0.3, 0.7) == 0.3
    # The composed functions are cached (one jit cache entry per estimator and sampler).
    entry = E.REGISTRY["decoupled_st"]
    assert entry.sampled("inverse_cdf") is entry.sampled("inverse_cdf")
    assert E.REGISTRY["st_gumbel_softmax"].sampled("gumbel") is E.get("st_gumbel_softmax")


@pytest.mark.parametrize(
    "name,options,form",
    [
        ("st_gumbel_softmax", {}, "categorical"),
        ("gumbel_rao", {}, "categorical"),
        ("decoupled_st", {"backward_noise": True}, "categorical"),
        ("decoupled_st", {}, "bernoulli"),
        ("softmax_relaxation", {}, "categorical"),
    ],
)
def test_inverse_cdf_is_refused_where_the_backward_needs_the_noise(name, options, form):
    with pytest.raises(ValueError, match=rf"estimator '{name}' cannot use sampler 'inverse_cdf'"):
        E.REGISTRY[name].sampled("inverse_cdf", form, **options)
    E.REGISTRY[name].sampled("gumbel", form, **options)  # today's stream stays available
    with pytest.raises(ValueError, match="sampler must be one of"):
        E.REGISTRY[name].sampled("sobol")


@pytest.mark.parametrize("k", [16, 100])  # unrolled, and a lax.scan beyond 64 classes
def test_inverse_cdf_running_sums_are_sequential(k):
    """c_k = c_{k-1} + e_k in index order, the float32 rounding of a sequential sum (numpy's
    cumsum), so the sums never decrease and a zero term repeats its predecessor."""
    e = np.array(jax.random.exponential(jax.random.key(6), (k, 50)))
    e[3] = 0.0
    got = np.asarray(samplers._running_sums(jnp.asarray(e)))
    np.testing.assert_array_equal(got, np.cumsum(e, axis=0, dtype=np.float32))
    assert np.all(np.diff(got, axis=0) >= 0) and np.array_equal(got[3], got[2])
    # The sampler on many classes: valid one-hots of the right law.
    logits = jnp.broadcast_to(jnp.linspace(-3.0, 3.0, k), (N, k))
    z = np.asarray(jax.jit(E.sample_inverse_cdf)(jax.random.key(7), logits, 1.0))
    assert np.all(z.sum(-1) == 1)
    p = np.asarray(jax.nn.softmax(jnp.linspace(-3.0, 3.0, k)), np.float64)
    sigma = np.sqrt(p * (1 - p) / N)
    np.testing.assert_array_less(np.abs(z.mean(0) - p), 5 * sigma + 1e-12)
