"""dst_jax.logic's bit-packed evaluation: packing, gate masks, and exact equality with the float
discretised network (`logic_layer` with `argmax_coefficients`, then `group_sum`)."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from boolean_gates import BOOLEAN  # tests/boolean_gates.py

from dst_jax import logic
from dst_jax.tasks import dlgn

PAIRS = list(itertools.product((0, 1), repeat=2))  # (a, b) = (0,0), (0,1), (1,0), (1,1)
ONES = 0xFFFFFFFF


def random_bits(n, d, seed):
    return np.random.default_rng(seed).integers(0, 2, (n, d)).astype(np.uint8)


def random_network(seed, in_dim, width, layers, scheme):
    """Flat wiring and inverse tables per layer, as `dlgn.build_data` draws them."""
    tables, dim = [], in_dim
    for layer in range(layers):
        idx_2xN = logic.make_wiring(seed * 100 + layer, dim, width, scheme)
        tables.append(tuple(jnp.asarray(t) for t in logic.wiring_tables(idx_2xN, dim)))
        dim = width
    return tables


def float_counts(logits, tables, x_NxD, n_classes):
    """The float discretised network's group sums at tau = 1, (N, n_classes)."""
    h = jnp.asarray(x_NxD, jnp.float32).T
    for lg, (idx, inv) in zip(logits, tables, strict=True):
        h = logic.logic_layer(h, logic.argmax_coefficients(lg), idx, inv)
    return np.asarray(logic.group_sum(h.T, n_classes, tau=1.0))


def float_predictions(logits, tables, x_NxD, n_classes, tau=100.0):
    h = jnp.asarray(x_NxD, jnp.float32).T
    for lg, (idx, inv) in zip(logits, tables, strict=True):
        h = logic.logic_layer(h, logic.argmax_coefficients(lg), idx, inv)
    return np.asarray(logic.group_sum(h.T, n_classes, tau).argmax(-1))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _packed_counts(logits, wirings, x_NxD, n_classes, block_words):
    gates = [jnp.argmax(lg, -1) for lg in logits]
    x_DxW = logic.pack_bits(x_NxD)
    return logic.packed_forward(gates, wirings, x_DxW, x_NxD.shape[0], n_classes, block_words)


def packed_counts(logits, tables, x_NxD, n_classes, block_words=None):
    wirings = [idx for idx, _ in tables]
    return np.asarray(_packed_counts(logits, wirings, x_NxD, n_classes, block_words))


# -- packing -----------------------------------------------------------------------------------
def test_pack_unpack_round_trip_and_bit_layout():
    x = random_bits(77, 5, 0)  # 77 = 2 * 32 + 13: a partial last word
    words = logic.pack_bits(jnp.asarray(x))
    assert words.shape == (5, 3) and words.dtype == jnp.uint32
    assert logic.n_words(77) == 3 and logic.n_words(64) == 2
    w = np.asarray(words)
    for n, d in itertools.product(range(77), range(5)):
        assert (w[d, n // 32] >> (n % 32)) & 1 == x[n, d]
    assert np.all(w[:, 2] >> 13 == 0)  # padding bits are 0
    back = logic.unpack_bits(words, 77)
    assert back.shape == (77, 5) and back.dtype == jnp.uint8
    np.testing.assert_array_equal(back, x)
    # bool and float inputs pack the same; jit gives the same words.
    np.testing.assert_array_equal(logic.pack_bits(jnp.asarray(x, bool)), w)
    np.testing.assert_array_equal(logic.pack_bits(jnp.asarray(x, jnp.float32)), w)
    np.testing.assert_array_equal(jax.jit(logic.pack_bits)(x), w)
    with pytest.raises(ValueError, match="at most 96"):
        logic.unpack_bits(words, 97)


@pytest.mark.parametrize("n", [512, 600, 1000])  # packed in a loop of 256-row blocks + a rest
def test_pack_bits_in_blocks(n):
    x = random_bits(n, 33, n)
    words = logic.pack_bits(jnp.asarray(x))
    assert words.shape == (33, logic.n_words(n))
    want = np.zeros((33, logic.n_words(n)), np.uint64)
    for b in range(32):
        rows = x[b::32].T.astype(np.uint64)  # examples 32 w + b
        want[:, : rows.shape[1]] |= rows << np.uint64(b)
    np.testing.assert_array_equal(words, want.astype(np.uint32))
    np.testing.assert_array_equal(logic.unpack_bits(words, n), x)
    # vmapped over a leading axis of inputs
    both = jax.vmap(logic.pack_bits)(jnp.stack([jnp.asarray(x), 1 - jnp.asarray(x)]))
    np.testing.assert_array_equal(both[0], words)
    np.testing.assert_array_equal(logic.unpack_bits(both[1], n), 1 - x)


# -- gates -------------------------------------------------------------------------------------
def test_every_gate_on_all_four_input_pairs():
    # Bit i of the two input words holds input pair PAIRS[i]; bits 4..31 are (a, b) = (1, 1).
    a_word = sum(a << i for i, (a, _) in enumerate(PAIRS)) | (ONES ^ 0xF)
    b_word = sum(b << i for i, (_, b) in enumerate(PAIRS)) | (ONES ^ 0xF)
    x_IxW = jnp.array([[a_word], [b_word]], jnp.uint32)
    gates = jnp.arange(16)
    out = np.asarray(logic.packed_layer(x_IxW, gates, jnp.array([0] * 16 + [1] * 16)))
    masks = np.asarray(logic.gate_masks(gates))
    assert masks.dtype == np.uint32 and set(np.unique(masks)) <= {0, ONES}
    a16 = jnp.full((16, 1), a_word, jnp.uint32)
    b16 = jnp.full((16, 1), b_word, jnp.uint32)
    dnf = np.asarray(logic.apply_gate_masks(a16, b16, logic.gate_masks(gates)))
    for k, name in enumerate(logic.GATE_NAMES):
        for i, (a, b) in enumerate(PAIRS):
            want = int(BOOLEAN[name](bool(a), bool(b)))
            c0, c1, c2, c3 = logic.GATE_COEF_16x4[k]
            assert c0 + c1 * a + c2 * b + c3 * a * b == want
            assert (k >> (3 - 2 * a - b)) & 1 == want
            assert (out[k, 0] >> i) & 1 == want, (name, a, b)
            assert (dnf[k, 0] >> i) & 1 == want, (name, a, b)
            assert masks[k, i] == (ONES if want else 0)
        # The (1, 1) bits 4..31 agree with bit 3.
        assert out[k, 0] >> 4 == (ONES >> 4 if (out[k, 0] >> 3) & 1 else 0)


def test_xor_form_equals_truth_table_form_on_random_words():
    rng = np.random.default_rng(1)
    gates = jnp.asarray(rng.integers(0, 16, 200))
    a = jnp.asarray(rng.integers(0, 2**32, (200, 7), dtype=np.uint64).astype(np.uint32))
    b = jnp.asarray(rng.integers(0, 2**32, (200, 7), dtype=np.uint64).astype(np.uint32))
    x = jnp.concatenate([a, b])
    via_layer = logic.packed_layer(x, gates, jnp.arange(400))
    np.testing.assert_array_equal(via_layer, logic.apply_gate_masks(a, b, logic.gate_masks(gates)))


# -- group counts ------------------------------------------------------------------------------
@pytest.mark.parametrize("group", [1, 2, 3, 7, 33, 255, 256, 600])  # > 255: several chunks
def test_group_counts_equal_unpacked_sums(group):
    n_classes, n = 3, 70
    h = random_bits(n, n_classes * group, group)
    counts = logic.packed_group_counts(logic.pack_bits(jnp.asarray(h)), n, n_classes)
    assert counts.shape == (n, n_classes) and counts.dtype == jnp.int32
    np.testing.assert_array_equal(counts, h.reshape(n, n_classes, group).sum(-1))
    ones = logic.pack_bits(jnp.ones((n, n_classes * group), jnp.uint8))
    np.testing.assert_array_equal(logic.packed_group_counts(ones, n, n_classes), group)


def test_shape_errors():
    x = jnp.zeros((4, 2), jnp.uint32)
    with pytest.raises(ValueError, match=r"2 \* 3"):
        logic.packed_layer(x, jnp.zeros(3, jnp.int32), jnp.zeros(5, jnp.int32))
    with pytest.raises(ValueError, match="divisible"):
        logic.packed_group_counts(x, 10, 3)
    with pytest.raises(ValueError, match="at most 64"):
        logic.packed_group_counts(x, 65, 2)
    with pytest.raises(ValueError, match="examples, inputs"):
        logic.pack_bits(jnp.zeros(5))
    with pytest.raises(ValueError, match="2 layers of gates for 1"):
        logic.packed_forward([jnp.zeros(2)] * 2, [jnp.zeros(4)], x, 10, 2)


# -- whole networks ----------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", logic.WIRING_SCHEMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_network_equals_float_network(scheme, seed):
    in_dim, width, layers, n_classes, n = 50, 60, 3, 6, 300  # 300 = 9 * 32 + 12
    tables = random_network(seed, in_dim, width, layers, scheme)
    keys = jax.random.split(jax.random.key(seed), layers)
    logits = [jax.random.normal(k, (width, 16)) for k in keys]
    x = random_bits(n, in_dim, seed + 10)
    counts = packed_counts(logits, tables, x, n_classes)
    assert counts.dtype == np.int32
    np.testing.assert_array_equal(counts, float_counts(logits, tables, x, n_classes))
    # Slices of 2 words (64 examples; the last slice padded) give the same counts.
    np.testing.assert_array_equal(packed_counts(logits, tables, x, n_classes, 2), counts)
    wirings = [idx for idx, _ in tables]
    gates = [lg.argmax(-1) for lg in logits]
    for block_words in (None, 4):
        pred = logic.packed_predict(gates, wirings, x, n_classes, block_words=block_words)
        assert pred.shape == (n,) and pred.dtype == jnp.int32
        np.testing.assert_array_equal(pred, float_predictions(logits, tables, x, n_classes))


def test_layers_of_different_widths():
    # Not one scan over equal-width hidden layers: the layers run one after the other.
    in_dim, widths, n_classes, n = 30, (40, 90, 60), 4, 200
    tables, dim = [], in_dim
    for layer, width in enumerate(widths):
        idx_2xN = logic.make_wiring(layer, dim, width, "random")
        tables.append(tuple(jnp.asarray(t) for t in logic.wiring_tables(idx_2xN, dim)))
        dim = width
    keys = jax.random.split(jax.random.key(11), len(widths))
    logits = [jax.random.normal(k, (w, 16)) for k, w in zip(keys, widths, strict=True)]
    x = random_bits(n, in_dim, 12)
    counts = packed_counts(logits, tables, x, n_classes)
    np.testing.assert_array_equal(counts, float_counts(logits, tables, x, n_classes))


def test_ties_in_gates_and_classes_resolve_like_argmax():
    in_dim, width, layers, n_classes, n = 12, 6, 2, 3, 100  # groups of 2 neurons: counts tie
    tables = random_network(5, in_dim, width, layers, "random")
    # Logits on a coarse grid: most neurons have several tied largest gate logits.
    rng = np.random.default_rng(5)
    logits = [jnp.asarray(rng.integers(0, 2, (width, 16)), jnp.float32) for _ in range(layers)]
    logits[0] = logits[0].at[0].set(0.0)  # one neuron with all 16 logits equal: gate 0
    assert sum(int((lg == lg.max(-1, keepdims=True)).sum(-1).max()) for lg in logits) > 2
    x = random_bits(n, in_dim, 6)
    counts = packed_counts(logits, tables, x, n_classes)
    np.testing.assert_array_equal(counts, float_counts(logits, tables, x, n_classes))
    top = counts.max(-1, keepdims=True)
    assert np.any((counts == top).sum(-1) > 1)  # class ties do occur
    gates = [lg.argmax(-1) for lg in logits]
    pred = logic.packed_predict(gates, [idx for idx, _ in tables], x, n_classes)
    np.testing.assert_array_equal(pred, float_predictions(logits, tables, x, n_classes))
    np.testing.assert_array_equal(pred, counts.argmax(-1))
    # All-equal logits everywhere: every gate is FALSE, every count 0, every prediction 0.
    flat = [jnp.zeros((width, 16)) for _ in range(layers)]
    np.testing.assert_array_equal(packed_counts(flat, tables, x, n_classes), 0)
    np.testing.assert_array_equal(float_predictions(flat, tables, x, n_classes), 0)


def test_vmap_over_a_grid_of_gate_logits():
    config = dlgn.Config(layers=3, width=60, n_classes=6, wiring="random")
    x = random_bits(150, 40, 3)
    data = dlgn.build_data(config, x, np.zeros(150, np.int32), x, np.zeros(150, np.int32))
    grid = jax.random.normal(jax.random.key(8), (3, config.layers, config.width, 16))

    def predict(logits_LxNx16):
        return logic.predict_from_logits(list(logits_LxNx16), data, config.n_classes)

    together = jax.jit(jax.vmap(predict))(grid)
    assert together.shape == (3, 150)
    for g in range(3):
        np.testing.assert_array_equal(together[g], predict(grid[g]))
    assert len({tuple(np.asarray(p)) for p in together}) > 1  # the three networks differ


@pytest.mark.parametrize("scheme", logic.WIRING_SCHEMES)
def test_predictions_equal_the_dlgn_task_forward(scheme):
    config = dlgn.Config(layers=2, width=120, n_classes=10, group_sum_tau=30.0, wiring=scheme)
    n_test, in_dim = 300, 100
    data = dlgn.build_data(
        config,
        random_bits(64, in_dim, 0),
        np.zeros(64, np.int32),
        random_bits(n_test, in_dim, 1),
        np.zeros(n_test, np.int32),
    )
    task = dlgn.DLGNTask(config)
    params = task.init_params(jax.random.key(4), data)
    hard = [logic.argmax_coefficients(lg) for lg in params["gate_logits"]]
    want = task.forward(hard, jnp.asarray(data["test_x"]), jax.tree.map(jnp.asarray, data))
    got = logic.predict_from_logits(params["gate_logits"], data, config.n_classes)
    np.testing.assert_array_equal(got, want.argmax(-1))
    # On other inputs too, and slice by slice.
    x = random_bits(77, in_dim, 2)
    want = task.forward(hard, jnp.asarray(x), jax.tree.map(jnp.asarray, data))
    got = logic.predict_from_logits(params["gate_logits"], data, 10, x, block_words=1)
    np.testing.assert_array_equal(got, want.argmax(-1))
