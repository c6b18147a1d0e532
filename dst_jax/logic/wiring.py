"""Fixed random wiring of a logic layer and its inverse tables: the inverse lets the wiring
gather's backward be a gather too, instead of a scatter-add that serialises on a GPU.

Index tables are host-side numpy int32 arrays; pass them INTO the compiled function (as
arguments or in the task's `data` dict), never close over them: XLA constant-folds gathers over
baked-in index tables and spends seconds per compile on it.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Scheme = Literal["random", "unique"]
WIRING_SCHEMES = ("random", "unique")


def _rng(key_or_seed: int | jax.Array) -> np.random.Generator:
    if isinstance(key_or_seed, (int, np.integer)):
        return np.random.default_rng(int(key_or_seed))
    key = jnp.asarray(key_or_seed)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())


def _unique_pairs(in_dim: int, out_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The first out_dim distinct pairs (i, j), i < j, in difflogic's order.

    Offset 1 first ((0,1), (2,3), ..., then (1,2), (3,4), ...), then offsets 2, 3, ...
    (i, i + d). One change from difflogic: for odd in_dim the pair (in_dim-2, in_dim-1) is moved to
    the front of the second offset-1 block, so ceil(in_dim / 2) neurons already read every input.
    """
    odd = np.arange(1, in_dim - 1, 2)
    if in_dim % 2 == 1:
        odd = np.concatenate([odd[-1:], odd[:-1]])
    starts = [np.arange(0, in_dim - 1, 2), odd]
    offsets = [1, 1]
    total = sum(s.size for s in starts)
    d = 2
    while total < out_dim:  # at most out_dim / (in_dim - d) + 1 more blocks
        starts.append(np.arange(in_dim - d))
        offsets.append(d)
        total += in_dim - d
        d += 1
    a = np.concatenate(starts)
    b = np.concatenate([s + o for s, o in zip(starts, offsets, strict=True)])
    return a[:out_dim], b[:out_dim]


def make_wiring(
    key_or_seed: int | jax.Array, in_dim: int, out_dim: int, scheme: Scheme = "random"
) -> np.ndarray:
    """Fixed input pairs of a logic layer, drawn on the host.

    Schemes (difflogic's two):
      "random": the 2 * out_dim input slots take a random permutation of (0..2*out_dim-1) mod
        in_dim, relabelled by a random permutation of the inputs: every input is read either
        floor(2 out_dim / in_dim) or ceil(2 out_dim / in_dim) times. A neuron may read one input
        twice.
      "unique": distinct unordered pairs of distinct inputs (neighbours first, then larger
        offsets, see `_unique_pairs`), assigned to neurons in random order.

    Both need out_dim * 2 >= in_dim so that every input is read at least once.

    Args:
      key_or_seed: an int seed or a jax PRNG key; the same value gives the same wiring.
      in_dim, out_dim: number of inputs and of neurons.
      scheme: "random" or "unique".

    Returns:
      int32 numpy array (2, out_dim): row 0 the a-inputs, row 1 the b-inputs.
    """
    if scheme not in WIRING_SCHEMES:
        raise ValueError(f"unknown wiring scheme {scheme!r}; choose one of {WIRING_SCHEMES}")
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"in_dim and out_dim must be positive, got {in_dim} and {out_dim}")
    if out_dim * 2 < in_dim:
        raise ValueError(
            f"a logic layer of {out_dim} neurons reads only {2 * out_dim} inputs, fewer than its "
            f"{in_dim} inputs, so some would be ignored; use at least {(in_dim + 1) // 2} neurons "
            f"(out_dim * 2 >= in_dim)"
        )
    rng = _rng(key_or_seed)
    if scheme == "random":
        slots = rng.permutation(2 * out_dim) % in_dim
        idx = rng.permutation(in_dim)[slots].reshape(2, out_dim)
    else:
        n_pairs = in_dim * (in_dim - 1) // 2
        if out_dim > n_pairs:
            raise ValueError(
                f"'unique' wiring needs out_dim <= in_dim * (in_dim - 1) / 2 = {n_pairs} distinct "
                f"input pairs, got out_dim={out_dim}; use scheme='random' or fewer neurons"
            )
        a, b = _unique_pairs(in_dim, out_dim)
        perm = rng.permutation(out_dim)
        idx = np.stack([a[perm], b[perm]])
    return idx.astype(np.int32)


def inverse_wiring(idx: np.ndarray, in_dim: int) -> np.ndarray:
    """For every input, the flat positions of `idx` that read it, padded.

    Args:
      idx: int array of any shape (e.g. the (2, n) wiring); flattened row-major into K positions.
      in_dim: number of inputs.

    Returns:
      int32 (in_dim, F), F = the largest fan-out (at least 1); row i lists the positions p with
      idx.flat[p] == i in increasing order, padded with K (one past the end, read as zero).
    """
    flat = np.asarray(idx).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= in_dim):
        raise ValueError(
            f"wiring indices must lie in [0, {in_dim}); got [{flat.min()}, {flat.max()}]"
        )
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=in_dim)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(flat.size) - np.repeat(first, counts)
    width = max(1, int(np.max(counts))) if counts.size else 1  # a column even when nothing is read
    inv = np.full((in_dim, width), flat.size, dtype=np.int32)
    inv[flat[order], rank] = order
    return inv


def _gather_rows(x_IxB: jax.Array, idx_K: jax.Array) -> jax.Array:
    # The tables are in bounds by construction: "clip" only adds a fused clamp.
    return jnp.take(x_IxB, idx_K, axis=0, mode="clip")


def _gather_rows_transpose(dy_KxB: jax.Array, inv_IxF: jax.Array) -> jax.Array:
    """dx[i] = sum_f dy[inv[i, f]], entries inv == K reading 0: the transpose of `_gather_rows`.

    One row gather per fan-out slot f (F is small and static) fused into one elementwise sum,
    which is faster on a CPU than gathering to (I, F, B) and reducing over F (docs/PERFORMANCE.md,
    "Logic-gate kernels"). mode="fill" reads the pad entries as 0 without materialising a
    zero-padded copy of dy.
    """
    dx_IxB = jnp.take(dy_KxB, inv_IxF[:, 0], axis=0, mode="fill", fill_value=0)
    for f in range(1, inv_IxF.shape[1]):
        dx_IxB += jnp.take(dy_KxB, inv_IxF[:, f], axis=0, mode="fill", fill_value=0)
    return dx_IxB


@jax.custom_vjp
def wire_gather(x_IxB: jax.Array, idx_K: jax.Array, inv_IxF: jax.Array) -> jax.Array:
    """y[p] = x[idx[p]] (rows of a neuron-major array) with a gather, not scatter-add, backward.

    Args:
      x_IxB: (I, ...) values, the gathered axis first.
      idx_K: int32 (K,) row indices into x.
      inv_IxF: int32 (I, F) = `inverse_wiring(idx_K, I)`; must match idx_K.

    Returns:
      (K, ...). The cotangent for x is dx[i] = sum_f dy[inv[i, f]] (pad entries read as 0).
    """
    return _gather_rows(x_IxB, idx_K)


def _wire_gather_fwd(x_IxB, idx_K, inv_IxF):
    return _gather_rows(x_IxB, idx_K), inv_IxF


def _wire_gather_bwd(inv_IxF, dy_KxB):
    return _gather_rows_transpose(dy_KxB, inv_IxF), None, None


wire_gather.defvjp(_wire_gather_fwd, _wire_gather_bwd)


def wiring_tables(idx_2xN: np.ndarray, in_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat wiring (2N,), inverse (in_dim, F)): the two int32 tables `logic_layer` reads."""
    idx_2xN = np.asarray(idx_2xN, dtype=np.int32)
    if idx_2xN.ndim != 2 or idx_2xN.shape[0] != 2:
        raise ValueError(f"wiring must have shape (2, n), got {idx_2xN.shape}")
    return idx_2xN.reshape(-1), inverse_wiring(idx_2xN, in_dim)
