"""dst_jax.logic: gate relaxations, wiring, the custom-VJP wiring gather, GroupSum."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from boolean_gates import BOOLEAN  # tests/boolean_gates.py

from dst_jax import logic


def relaxations_written_out(a, b):
    """The 16 real-valued relaxations of DESIGN.md section 2, stacked on a new last axis."""
    return jnp.stack(
        [
            jnp.zeros_like(a),
            a * b,
            a - a * b,
            a,
            b - a * b,
            b,
            a + b - 2 * a * b,
            a + b - a * b,
            1 - (a + b - a * b),
            1 - (a + b - 2 * a * b),
            1 - b,
            1 - b + a * b,
            1 - a,
            1 - a + a * b,
            1 - a * b,
            jnp.ones_like(a),
        ],
        axis=-1,
    )


def random_probs(key, shape):
    return jax.nn.softmax(2.0 * jax.random.normal(key, (*shape, logic.N_GATES)), axis=-1)


def test_gate_names_follow_difflogic_order():
    assert logic.GATE_NAMES == tuple(BOOLEAN)
    assert logic.GATE_COEF_16x4.shape == (16, 4)


def test_relax_one_hot_reproduces_every_truth_table():
    # One neuron per (gate, input pair): n = 16 * 4 neurons evaluated in one call.
    pairs = list(itertools.product((0, 1), repeat=2))
    gates = np.repeat(np.arange(16), 4)
    a = np.array([p[0] for p in pairs] * 16, np.float32)
    b = np.array([p[1] for p in pairs] * 16, np.float32)
    probs = jax.nn.one_hot(gates, 16)
    out = np.asarray(logic.relax(jnp.asarray(a), jnp.asarray(b), probs))
    expected = [
        float(BOOLEAN[logic.GATE_NAMES[g]](bool(x), bool(y)))
        for g, x, y in zip(gates, a, b, strict=True)
    ]
    np.testing.assert_array_equal(out, expected)


def test_relax_soft_probs_equal_weighted_sum_of_relaxations():
    ka, kb, kp, kq = jax.random.split(jax.random.key(0), 4)
    a = jax.random.uniform(ka, (5, 7))
    b = jax.random.uniform(kb, (5, 7))
    expected_all = relaxations_written_out(a, b)  # (5, 7, 16)
    shared = random_probs(kp, (7,))
    np.testing.assert_allclose(
        logic.relax(a, b, shared), (expected_all * shared).sum(-1), rtol=1e-6, atol=1e-6
    )
    per_example = random_probs(kq, (5, 7))
    np.testing.assert_allclose(
        logic.relax(a, b, per_example), (expected_all * per_example).sum(-1), rtol=1e-6, atol=1e-6
    )


def test_relax_gradient_equals_analytic():
    ka, kb, kp, kw = jax.random.split(jax.random.key(1), 4)
    a = jax.random.uniform(ka, (6, 5))
    b = jax.random.uniform(kb, (6, 5))
    probs = random_probs(kp, (5,))
    w = jax.random.normal(kw, (6, 5))  # upstream cotangent
    da, db, dp = jax.grad(lambda a, b, p: (w * logic.relax(a, b, p)).sum(), argnums=(0, 1, 2))(
        a, b, probs
    )
    c = np.asarray(probs) @ logic.GATE_COEF_16x4  # (5, 4)
    a_, b_, w_ = np.asarray(a), np.asarray(b), np.asarray(w)
    np.testing.assert_allclose(da, w_ * (c[:, 1] + c[:, 3] * b_), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, w_ * (c[:, 2] + c[:, 3] * a_), rtol=1e-5, atol=1e-6)
    # d out / d probs_k = gate_k(a, b), summed over the batch.
    gates = np.asarray(relaxations_written_out(a, b))  # (6, 5, 16)
    np.testing.assert_allclose(dp, (w_[..., None] * gates).sum(0), rtol=1e-5, atol=1e-5)


def test_relax_rejects_bad_shapes():
    a = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="same shape"):
        logic.relax(a, jnp.zeros((3, 5)), jnp.zeros((4, 16)))
    with pytest.raises(ValueError, match="n = a.shape"):
        logic.relax(a, a, jnp.zeros((5, 16)))
    with pytest.raises(ValueError, match="16 entries"):
        logic.relax(a, a, jnp.zeros((4, 15)))


def test_argmax_coefficients_equal_one_hot_coefficients():
    logits = jax.random.normal(jax.random.key(2), (3, 40, 16))
    one_hot = jax.nn.one_hot(logits.argmax(-1), 16)
    np.testing.assert_array_equal(
        logic.argmax_coefficients(logits), logic.gate_coefficients(one_hot)
    )


# -- wiring ------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_dim,out_dim", [(10, 5), (11, 6), (9, 36), (64, 200), (1000, 700)])
def test_unique_wiring_distinct_pairs_and_every_input_used(in_dim, out_dim):
    idx = logic.make_wiring(3, in_dim, out_dim, "unique")
    assert idx.shape == (2, out_dim) and idx.dtype == np.int32
    assert np.all(idx[0] != idx[1])
    pairs = {tuple(sorted(p)) for p in idx.T.tolist()}
    assert len(pairs) == out_dim
    assert set(idx.ravel().tolist()) == set(range(in_dim))


@pytest.mark.parametrize("in_dim,out_dim", [(10, 5), (11, 6), (100, 333), (9216, 12000)])
def test_random_wiring_uses_every_input_evenly(in_dim, out_dim):
    idx = logic.make_wiring(0, in_dim, out_dim, "random")
    counts = np.bincount(idx.ravel(), minlength=in_dim)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1
    assert counts.sum() == 2 * out_dim


@pytest.mark.parametrize("scheme", logic.WIRING_SCHEMES)
def test_wiring_is_deterministic_per_seed(scheme):
    a = logic.make_wiring(7, 50, 80, scheme)
    np.testing.assert_array_equal(a, logic.make_wiring(7, 50, 80, scheme))
    assert not np.array_equal(a, logic.make_wiring(8, 50, 80, scheme))
    key = jax.random.key(7)
    np.testing.assert_array_equal(
        logic.make_wiring(key, 50, 80, scheme), logic.make_wiring(key, 50, 80, scheme)
    )


@pytest.mark.parametrize("scheme", logic.WIRING_SCHEMES)
def test_wiring_too_narrow_layer_is_refused(scheme):
    with pytest.raises(ValueError, match=r"out_dim \* 2 >= in_dim"):
        logic.make_wiring(0, 101, 50, scheme)
    logic.make_wiring(0, 101, 51, scheme)  # the narrowest layer that reads every input


def test_wiring_other_errors():
    with pytest.raises(ValueError, match="distinct"):
        logic.make_wiring(0, 4, 7, "unique")  # only 6 distinct pairs of 4 inputs
    with pytest.raises(ValueError, match="unknown wiring scheme"):
        logic.make_wiring(0, 4, 4, "learned")


def test_inverse_wiring_lists_every_reader():
    idx = logic.make_wiring(1, 30, 50, "random")
    inv = logic.inverse_wiring(idx, 30)
    flat = idx.ravel()
    for i in range(30):
        readers = inv[i][inv[i] < flat.size]
        np.testing.assert_array_equal(readers, np.flatnonzero(flat == i))
    assert np.all(inv[inv < flat.size] >= 0) and np.all(inv[inv >= flat.size] == flat.size)


# -- the layer ---------------------------------------------------------------------------------
def test_wire_gather_vjp_equals_default_gather_gradient():
    idx_2xN = logic.make_wiring(0, 40, 70, "unique")
    idx, inv = (jnp.asarray(t) for t in logic.wiring_tables(idx_2xN, 40))
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (3, 40, 2))  # a vmapped axis, then (I, B)
    w = jax.random.normal(kw, (140, 2))

    def custom(x, idx, inv):
        return (w * jnp.sin(logic.wire_gather(x, idx, inv))).sum()

    def default(x, idx, inv):
        return (w * jnp.sin(x[idx])).sum()

    # Tables passed as arguments (as in the task), under jit and vmap.
    g_custom = jax.jit(jax.vmap(jax.grad(custom), in_axes=(0, None, None)))(x, idx, inv)
    g_default = jax.vmap(jax.grad(default), in_axes=(0, None, None))(x, idx, inv)
    np.testing.assert_allclose(g_custom, g_default, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(logic.wire_gather(x[0], idx, inv), x[0][idx])
    # The point of the custom rule: no scatter in the backward.
    assert "scatter" in str(jax.make_jaxpr(jax.grad(default))(x[0], idx, inv))
    assert "scatter" not in str(jax.make_jaxpr(jax.grad(custom))(x[0], idx, inv))


def test_logic_layer_equals_relax_on_wired_inputs():
    idx_2xN = logic.make_wiring(5, 12, 8, "random")
    idx, inv = logic.wiring_tables(idx_2xN, 12)
    x_IxB = jax.random.uniform(jax.random.key(3), (12, 4))
    a_BxN, b_BxN = x_IxB.T[:, idx_2xN[0]], x_IxB.T[:, idx_2xN[1]]
    probs = random_probs(jax.random.key(4), (8,))
    out_NxB = logic.logic_layer(x_IxB, logic.gate_coefficients(probs), idx, inv)
    np.testing.assert_allclose(out_NxB.T, logic.relax(a_BxN, b_BxN, probs), rtol=1e-6, atol=1e-6)
    # Per-example coefficients (N, B, 4).
    per_example = random_probs(jax.random.key(6), (4, 8))  # (B, N, 16)
    out_NxB = logic.logic_layer(
        x_IxB, logic.gate_coefficients(per_example).transpose(1, 0, 2), idx, inv
    )
    np.testing.assert_allclose(
        out_NxB.T, logic.relax(a_BxN, b_BxN, per_example), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("per_example", [False, True])
def test_logic_layer_vjp_equals_autodiff_of_the_plain_layer(per_example):
    in_dim, n, batch = 30, 25, 6
    idx_2xN = logic.make_wiring(2, in_dim, n, "random")
    idx, inv = (jnp.asarray(t) for t in logic.wiring_tables(idx_2xN, in_dim))
    kx, kc, kw = jax.random.split(jax.random.key(7), 3)
    x_IxB = jax.random.uniform(kx, (in_dim, batch))
    coef = jax.random.normal(kc, (n, batch, 4) if per_example else (n, 4))
    w_NxB = jax.random.normal(kw, (n, batch))

    def fast(x, c):
        return (w_NxB * jnp.cos(logic.logic_layer(x, c, idx, inv))).sum()

    def plain(x, c):  # default gather (scatter-add backward) and autodiff of the polynomial
        c = c if per_example else c[:, None]
        a, b = x[idx[:n]], x[idx[n:]]
        out = c[..., 0] + c[..., 1] * a + c[..., 2] * b + c[..., 3] * a * b
        return (w_NxB * jnp.cos(out)).sum()

    g_fast = jax.jit(jax.grad(fast, argnums=(0, 1)))(x_IxB, coef)
    g_plain = jax.grad(plain, argnums=(0, 1))(x_IxB, coef)
    for got, want in zip(g_fast, g_plain, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Under vmap over a grid axis (how the sweep engine runs it).
    xs = jnp.stack([x_IxB, 1 - x_IxB])
    g_vmapped = jax.vmap(jax.grad(fast), in_axes=(0, None))(xs, coef)
    np.testing.assert_allclose(g_vmapped[1], jax.grad(plain)(1 - x_IxB, coef), rtol=1e-5, atol=1e-5)


def test_group_sum():
    x = jax.random.uniform(jax.random.key(5), (3, 20))
    expected = np.asarray(x).reshape(3, 4, 5).sum(-1) / 2.5
    np.testing.assert_allclose(logic.group_sum(x, n_classes=4, tau=2.5), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        logic.group_sum(x, n_classes=3)


def test_group_sum_neuron_major_equals_group_sum_of_the_transpose():
    x_NxB = jax.random.uniform(jax.random.key(3), (20, 6))
    got = logic.group_sum_neuron_major(x_NxB, n_classes=4, tau=2.5)
    assert got.shape == (6, 4)
    np.testing.assert_allclose(got, logic.group_sum(x_NxB.T, n_classes=4, tau=2.5), rtol=1e-6)
    bits = (x_NxB > 0.5).astype(jnp.float32)  # integer sums: equal exactly
    np.testing.assert_array_equal(
        logic.group_sum_neuron_major(bits, 4, 1.0), logic.group_sum(bits.T, 4, 1.0)
    )
    with pytest.raises(ValueError, match="divisible"):
        logic.group_sum_neuron_major(x_NxB, n_classes=3)


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.bool_, jnp.float32])
def test_neuron_major_is_an_exact_transpose(dtype):
    """On CPU a matrix product with the identity, which must be exact for inputs in [0, 1]."""
    x = jax.random.uniform(jax.random.key(4), (37, 50))
    if dtype != jnp.float32:
        x = x > 0.5
    x = x.astype(dtype)
    got = jax.jit(logic.neuron_major)(x)
    assert got.dtype == jnp.float32 and got.shape == (50, 37)
    np.testing.assert_array_equal(got, np.asarray(x, np.float32).T)
    # Gradients reach float inputs through the transpose.
    if dtype == jnp.float32:
        w = jax.random.normal(jax.random.key(5), (50, 37))
        np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(w * logic.neuron_major(x)))(x), w.T)


@pytest.mark.parametrize("per_example", [False, True])
def test_packed_input_layer_equals_the_float_layer(per_example):
    """Bit-packed {0, 1} inputs: the same outputs and coefficient gradient as `logic_layer` on
    the floats (37 examples: a partly filled second word), also under vmap over a grid."""
    in_dim, n, batch = 30, 25, 37
    idx_2xN = logic.make_wiring(3, in_dim, n, "random")
    idx, inv = (jnp.asarray(t) for t in logic.wiring_tables(idx_2xN, in_dim))
    kx, kc, kw = jax.random.split(jax.random.key(8), 3)
    x_BxD = jax.random.bernoulli(kx, 0.5, (batch, in_dim)).astype(jnp.uint8)
    coef = jax.random.normal(kc, (n, batch, 4) if per_example else (n, 4))
    w_NxB = jax.random.normal(kw, (n, batch))

    def packed(c, x):
        out = logic.packed_input_layer(logic.pack_bits(x), c, idx, batch)
        return (w_NxB * jnp.cos(out)).sum(), out

    def floats(c, x):
        out = logic.logic_layer(x.T.astype(jnp.float32), c, idx, inv)
        return (w_NxB * jnp.cos(out)).sum(), out

    (_, got), g_got = jax.jit(jax.value_and_grad(packed, has_aux=True))(coef, x_BxD)
    (_, want), g_want = jax.value_and_grad(floats, has_aux=True)(coef, x_BxD)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(g_got, g_want, rtol=1e-6, atol=1e-6)
    xs = jnp.stack([x_BxD, 1 - x_BxD])
    g_vmapped = jax.vmap(jax.grad(lambda c, x: packed(c, x)[0]), in_axes=(None, 0))(coef, xs)
    g_one = jax.grad(lambda c: floats(c, 1 - x_BxD)[0])(coef)
    np.testing.assert_allclose(g_vmapped[1], g_one, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="examples"):
        logic.packed_input_layer(logic.pack_bits(x_BxD), coef, idx, 65)
