"""dst_jax.data.pipeline: preprocessing values and shapes, seeded minibatch order under jit,
vmap and scan, resuming mid-epoch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dst_jax.data import pipeline


def test_scale_unit_values_and_shape():
    x = np.random.default_rng(0).integers(0, 256, (3, 4, 5, 2), dtype=np.uint8)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, 255
    out = pipeline.scale_unit(x)
    assert out.shape == (3, 40) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), x.reshape(3, -1) / 255.0, rtol=1e-6)
    assert float(out[0, 0]) == 0.0 and float(out[0, 1]) == 1.0


def test_threshold_planes_layout_and_boundaries():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    # Values on both sides of each threshold (64/255 > 1/4 > 63/255, and so on).
    x[0, 0, :, 0] = [63, 64, 127, 128]
    x[0, 1, :, 0] = [191, 192, 0, 255]
    out = np.asarray(pipeline.threshold_planes(x))
    assert out.shape == (2, 3 * 3 * 4 * 3) and out.dtype == np.uint8
    planes = out.reshape(2, 3, 3, 4, 3)  # (N, T, H, W, C)
    for t, level in enumerate((64, 128, 192)):
        np.testing.assert_array_equal(planes[:, t], (x >= level).astype(np.uint8))
    np.testing.assert_array_equal(planes[0, :, 0, :, 0], [[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(planes[0, :, 1, :, 0], [[1, 1, 0, 1], [1, 1, 0, 1], [0, 1, 0, 1]])
    custom = np.asarray(pipeline.threshold_planes(x, thresholds=(0.5,)))
    np.testing.assert_array_equal(custom, (x >= 128).reshape(2, -1))


def test_threshold_planes_cifar_width():
    out = pipeline.threshold_planes(jnp.zeros((2, 32, 32, 3), jnp.uint8))
    assert out.shape == (2, 9216)


@pytest.mark.parametrize("fn", [pipeline.scale_unit, pipeline.threshold_planes])
def test_preprocessing_rejects_scaled_input(fn):
    with pytest.raises(ValueError, match="expects uint8 pixels"):
        fn(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("thresholds", [(), (0.5, 1.0), (-0.1,)])
def test_threshold_planes_rejects_bad_thresholds(thresholds):
    with pytest.raises(ValueError, match="thresholds must be"):
        pipeline.threshold_planes(np.zeros((1, 4), np.uint8), thresholds)


def test_epoch_permutation_is_a_seeded_permutation():
    k0, k1 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    p = np.asarray(pipeline.epoch_permutation(k0, 0, 100))
    assert p.dtype == np.int32
    np.testing.assert_array_equal(np.sort(p), np.arange(100))
    np.testing.assert_array_equal(p, pipeline.epoch_permutation(k0, 0, 100))
    assert not np.array_equal(p, pipeline.epoch_permutation(k1, 0, 100))
    assert not np.array_equal(p, pipeline.epoch_permutation(k0, 1, 100))
    expected = jax.random.permutation(jax.random.fold_in(k0, 3), 100)
    np.testing.assert_array_equal(pipeline.epoch_permutation(k0, jnp.int32(3), 100), expected)


N, B = 23, 5  # 4 batches per epoch, 3 examples dropped per epoch
STEPS = 12  # 3 epochs; one length everywhere so that each transform compiles once


def scan_indices(key, order, start):
    """Indices of steps start .. start + STEPS - 1 from a lax.scan, and the order after each."""

    def body(order, step):
        idx, order = pipeline.batch_indices(key, step, order, n=N, batch_size=B)
        return order, (idx, order)

    _, (idx, orders) = jax.lax.scan(body, order, start + jnp.arange(STEPS, dtype=jnp.int32))
    return idx, orders


run = jax.jit(scan_indices)


def test_batches_cover_each_epoch_once_in_permutation_order():
    key = jax.random.PRNGKey(42)
    idx, _ = run(key, pipeline.init_batch_order(N), 0)
    idx = np.asarray(idx)
    assert idx.shape == (STEPS, B) and idx.dtype == np.int32
    for epoch in range(3):
        seen = idx[4 * epoch : 4 * (epoch + 1)].ravel()
        assert len(set(seen.tolist())) == 4 * B  # no example twice within an epoch
        perm = np.asarray(pipeline.epoch_permutation(key, epoch, N))
        np.testing.assert_array_equal(seen, perm[: 4 * B])
    assert not np.array_equal(idx[:4], idx[4:8])  # each epoch reshuffles


def test_seeds_differ_and_repeat():
    order = pipeline.init_batch_order(N)
    a, _ = run(jax.random.PRNGKey(0), order, 0)
    b, _ = run(jax.random.PRNGKey(1), order, 0)
    a2, _ = run(jax.random.PRNGKey(0), order, 0)
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a[:4], b[:4])


def test_resume_mid_epoch_equals_uninterrupted():
    key = jax.random.PRNGKey(7)
    whole, orders = run(key, pipeline.init_batch_order(N), 0)
    carried = orders[5]  # the state after step 5: stopped in epoch 1, at position 2
    rest, _ = run(key, carried, 6)
    np.testing.assert_array_equal(rest[: STEPS - 6], whole[6:])
    # The carried order matters: a fresh one is not the epoch's permutation.
    wrong, _ = run(key, pipeline.init_batch_order(N), 6)
    assert not np.array_equal(wrong[:2], rest[:2])


@pytest.mark.parametrize("batched_step", [False, True])
def test_vmap_over_seeds_matches_single_runs(batched_step):
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
    orders = jnp.stack([pipeline.init_batch_order(N)] * 3)
    steps = jnp.zeros(3, jnp.int32) if batched_step else jnp.int32(0)
    in_axes = (0, 0, 0 if batched_step else None)
    idx, orders_out = jax.jit(jax.vmap(scan_indices, in_axes=in_axes))(keys, orders, steps)
    assert idx.shape == (3, STEPS, B) and orders_out.shape == (3, STEPS, N)
    for s in range(3):
        single, single_orders = run(keys[s], pipeline.init_batch_order(N), 0)
        np.testing.assert_array_equal(idx[s], single)
        np.testing.assert_array_equal(orders_out[s], single_orders)
    assert not np.array_equal(idx[0], idx[1])


def test_unbatched_step_keeps_the_cond():
    # With one step counter for the grid, the permutation must stay behind a cond, not be
    # computed every step (a select would evaluate both branches).
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(2))
    orders = jnp.stack([pipeline.init_batch_order(N)] * 2)
    fn = jax.vmap(
        lambda k, o, t: pipeline.batch_indices(k, t, o, n=N, batch_size=B), in_axes=(0, 0, None)
    )
    jaxpr = jax.make_jaxpr(fn)(keys, orders, jnp.int32(3))
    assert "cond" in str(jaxpr)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n=N, batch_size=0), "1 <= batch_size <= n"),
        (dict(n=N, batch_size=N + 1), "1 <= batch_size <= n"),
        (dict(n=N + 1, batch_size=B), r"order must have shape \(24,\)"),
    ],
)
def test_batch_indices_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline.batch_indices(jax.random.PRNGKey(0), 0, pipeline.init_batch_order(N), **kwargs)
