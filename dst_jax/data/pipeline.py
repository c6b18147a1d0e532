"""On-device data for the compiled training loops.

The whole split lives on the device, preprocessed once (`device_split`). Minibatches are drawn
inside the compiled loop from a seeded permutation per epoch, so there is no host round-trip per
step and a vmapped grid can give every seed its own data order:

    order = init_batch_order(n)                       # carried in the training state
    for step in ...:                                  # inside lax.scan
        idx, order = batch_indices(key, step, order, n=n, batch_size=B)
        x_BxD, y_B = train_x[idx], train_y[idx]

Epoch e of a run uses the permutation `epoch_permutation(key, e, n)`; its batches are
consecutive slices of it and the last `n % B` examples of each epoch are dropped. The
permutation is computed once per epoch (at its first step) and carried in between, which is why
`order` is threaded through the loop.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dst_jax.data.loader import load_with_info

PREPROCESS = ("unit", "threshold")
DEFAULT_THRESHOLDS = (0.25, 0.5, 0.75)


def _check_uint8(images: Any, fn: str) -> None:
    if images.dtype != np.uint8:
        raise ValueError(
            f"{fn} expects uint8 pixels in [0, 255] (as returned by dst_jax.data.load), got "
            f"dtype {images.dtype}; pass the raw images, not already scaled ones"
        )
    if images.ndim < 2:
        raise ValueError(f"{fn} expects images of shape (N, ...), got shape {images.shape}")


def scale_unit(images_u8: jax.Array | np.ndarray) -> jax.Array:
    """x = pixel / 255, flattened per example.

    Args:
      images_u8: uint8 (N, H, W, C) (any trailing shape).
    Returns:
      float32 (N, H*W*C) in [0, 1].
    """
    _check_uint8(images_u8, "scale_unit")
    x = jnp.asarray(images_u8)
    return x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0


def threshold_planes(
    images_u8: jax.Array | np.ndarray, thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
) -> jax.Array:
    """Binary planes: bit[n, t, h, w, c] = 1[pixel[n, h, w, c] / 255 > thresholds[t]].

    The comparison is done in float32. With the default thresholds (1/4, 2/4, 3/4) a bit is set
    for pixel >= 64, 128, 192 respectively; CIFAR-10 gives 3 x 32 x 32 x 3 = 9,216 inputs.

    Args:
      images_u8: uint8 (N, H, W, C) (any trailing shape).
      thresholds: T static floats in [0, 1).
    Returns:
      uint8 (N, T*H*W*C) in {0, 1}, the flattening of (N, T, H, W, C).
    """
    _check_uint8(images_u8, "threshold_planes")
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or not all(0.0 <= t < 1.0 for t in thresholds):
        raise ValueError(
            f"thresholds must be a non-empty tuple of floats in [0, 1), got {thresholds}"
        )
    x = jnp.asarray(images_u8)
    unit = x.astype(jnp.float32)[:, None] / 255.0  # (N, 1, H, W, C)
    t = jnp.asarray(thresholds, jnp.float32).reshape((1, -1) + (1,) * (x.ndim - 1))
    bits = (unit > t).astype(jnp.uint8)  # (N, T, H, W, C)
    return bits.reshape(x.shape[0], -1)


def device_split(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    preprocess: str = "unit",
) -> tuple[jax.Array, jax.Array, dict[str, Any]]:
    """A whole split on the default device, preprocessed once.

    preprocess="unit": x float32 (N, H*W*C) in [0, 1] (`scale_unit`);
    preprocess="threshold": x uint8 (N, 3*H*W*C) in {0, 1} (`threshold_planes`, 1/4, 2/4, 3/4).
    y is int32 (N,). info is `load_with_info`'s dict plus "preprocess".
    """
    if preprocess not in PREPROCESS:
        raise ValueError(f"unknown preprocess {preprocess!r}; choose one of {PREPROCESS}")
    images, labels, info = load_with_info(name, split, data_dir)
    # Ship uint8 (4x less than float32) and preprocess on the device.
    images = jax.device_put(images)
    # Jitted so the float intermediate is fused away (CIFAR-10: 0.6 GB in float32).
    fn = scale_unit if preprocess == "unit" else threshold_planes
    x = jax.jit(fn)(images)
    y = jax.device_put(labels.astype(np.int32))
    return x, y, {**info, "preprocess": preprocess}


def epoch_permutation(key: jax.Array, epoch: jax.Array | int, n: int) -> jax.Array:
    """The data order of epoch `epoch`: permutation(fold_in(key, epoch), n), int32 (n,)."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)


def init_batch_order(n: int) -> jax.Array:
    """Initial value of the carried order, int32 (n,); replaced at step 0 before any use."""
    return jnp.arange(n, dtype=jnp.int32)


def batch_indices(
    key: jax.Array, step: jax.Array | int, order: jax.Array, *, n: int, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """Example indices of minibatch `step` and the updated carried order.

    steps_per_epoch = n // batch_size; epoch, pos = divmod(step, steps_per_epoch);
    at pos == 0 the order becomes epoch_permutation(key, epoch, n) (a `lax.cond`, so the sort
    runs once per epoch); idx = order[pos * batch_size : (pos + 1) * batch_size].

    Works under jit and vmap. With `step` unbatched (one step counter for a vmapped grid) the
    cond stays a cond; with `step` batched vmap turns it into a select, which computes the
    permutation every step (correct, slower). A run resumed mid-epoch with its carried `order`
    continues exactly like an uninterrupted one.

    Args:
      key: PRNG key of the data order (typically one per seed).
      step: global step, int scalar.
      order: int32 (n,), the carried order (`init_batch_order(n)` at the start).
      n, batch_size: static ints, 1 <= batch_size <= n.
    Returns:
      (idx int32 (batch_size,), order int32 (n,)).
    """
    if not (isinstance(n, int) and isinstance(batch_size, int)):
        raise ValueError(f"n and batch_size must be Python ints, got {n!r}, {batch_size!r}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"need 1 <= batch_size <= n, got batch_size={batch_size}, n={n}")
    if order.shape != (n,):
        raise ValueError(f"order must have shape ({n},), got {order.shape}")
    steps_per_epoch = n // batch_size
    step = jnp.asarray(step, jnp.int32)
    epoch, pos = jnp.divmod(step, steps_per_epoch)
    order = jax.lax.cond(
        pos == 0,
        lambda: epoch_permutation(key, epoch, n),
        lambda: order.astype(jnp.int32),
    )
    idx = jax.lax.dynamic_slice(order, (pos * batch_size,), (batch_size,))
    return idx, order
