"""Differentiable logic gate layers (difflogic, Petersen et al. 2022), written for speed in JAX.

A logic layer of n neurons reads an input vector x (in_dim values in [0, 1]). Neuron j reads two
fixed inputs a_j = x[wa_j], b_j = x[wb_j] (the wiring) and applies one of the 16 two-input Boolean
gates, chosen by a categorical weight vector w_j over `GATE_NAMES`:

    out_j = sum_k w_jk gate_k(a_j, b_j).

Every relaxed gate is a bilinear polynomial gate_k(a, b) = C_k0 + C_k1 a + C_k2 b + C_k3 ab, so the
16-wide sum collapses to 4 coefficients per neuron, c_j = w_j @ C (C = `GATE_COEF_16x4`):

    out_j = c_j0 + c_j1 a_j + c_j2 b_j + c_j3 a_j b_j.

The layer therefore never builds a (batch, n, 16) activation tensor: forward and backward are
gathers plus a few fused elementwise ops and a batch reduction for the coefficient gradient.
Layer activations are neuron-major, (neurons, batch), so that the gathers move contiguous rows.

The wiring gather's backward is not the default scatter-add, which serialises (atomics) on GPU:
we precompute the inverse wiring, for every input the list of gathered positions that read it,
so the backward is again a gather followed by a sum (`wire_gather`, and inside the hand-written
VJP of `logic_layer`).
Index tables are host-side numpy int32 arrays; pass them INTO the compiled function (as arguments
or in the task's `data` dict), never close over them: XLA constant-folds gathers over baked-in
index tables and spends seconds per compile on it.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Scheme = Literal["random", "unique"]
WIRING_SCHEMES = ("random", "unique")

# difflogic's order: on Boolean inputs, gate k outputs bit (3 - 2a - b) of the integer k (e.g.
# k = 1 = 0b0001 is 1 only on (1, 1): AND; k = 8 = 0b1000 is 1 only on (0, 0): NOR).
GATE_NAMES = (
    "FALSE",
    "AND",
    "A AND NOT B",
    "A",
    "NOT A AND B",
    "B",
    "XOR",
    "OR",
    "NOR",
    "XNOR",
    "NOT B",
    "B IMPLIES A",
    "NOT A",
    "A IMPLIES B",
    "NAND",
    "TRUE",
)
N_GATES = len(GATE_NAMES)

# Row k: (c0, c1, c2, c3) with gate_k(a, b) = c0 + c1 a + c2 b + c3 ab (DESIGN.md section 2).
GATE_COEF_16x4 = np.array(
    [
        [0, 0, 0, 0],  # FALSE        0
        [0, 0, 0, 1],  # AND          ab
        [0, 1, 0, -1],  # A AND NOT B  a - ab
        [0, 1, 0, 0],  # A            a
        [0, 0, 1, -1],  # NOT A AND B  b - ab
        [0, 0, 1, 0],  # B            b
        [0, 1, 1, -2],  # XOR          a + b - 2ab
        [0, 1, 1, -1],  # OR           a + b - ab
        [1, -1, -1, 1],  # NOR          1 - (a + b - ab)
        [1, -1, -1, 2],  # XNOR         1 - (a + b - 2ab)
        [1, 0, -1, 0],  # NOT B        1 - b
        [1, 0, -1, 1],  # B IMPLIES A  1 - b + ab
        [1, -1, 0, 0],  # NOT A        1 - a
        [1, -1, 0, 1],  # A IMPLIES B  1 - a + ab
        [1, 0, 0, -1],  # NAND         1 - ab
        [1, 0, 0, 0],  # TRUE         1
    ],
    dtype=np.float32,
)


def gate_coefficients(probs: jax.Array) -> jax.Array:
    """Per-neuron polynomial coefficients c = probs @ C.

    Args:
      probs: gate weights (..., n, 16), e.g. softmax probabilities or one-hot samples.

    Returns:
      (..., n, 4) coefficients (c0, c1, c2, c3) of c0 + c1 a + c2 b + c3 ab, in probs' dtype.
    """
    if probs.shape[-1] != N_GATES:
        raise ValueError(
            f"gate weights need {N_GATES} entries on the last axis, got shape {probs.shape}"
        )
    coef = jnp.asarray(GATE_COEF_16x4, dtype=probs.dtype)
    # HIGHEST: GPUs would otherwise run this f32 contraction in TF32 and round the probabilities.
    return jnp.einsum("...g,gc->...c", probs, coef, precision=jax.lax.Precision.HIGHEST)


def argmax_coefficients(logits: jax.Array) -> jax.Array:
    """Coefficients of each neuron's most likely gate: C[argmax(logits)], shape (..., n, 4).

    Equals `gate_coefficients(one_hot(argmax(logits)))` without building the one-hot; this is
    the discretised network (ties go to the lower gate index, like `jnp.argmax`).
    """
    if logits.shape[-1] != N_GATES:
        raise ValueError(
            f"gate logits need {N_GATES} entries on the last axis, got shape {logits.shape}"
        )
    return jnp.asarray(GATE_COEF_16x4, dtype=logits.dtype)[jnp.argmax(logits, axis=-1)]


def apply_coefficients(a: jax.Array, b: jax.Array, coef: jax.Array) -> jax.Array:
    """out = c0 + c1 a + c2 b + c3 ab for inputs (..., n) and coefficients (n, 4) or (..., n, 4)."""
    c0, c1, c2, c3 = (coef[..., i] for i in range(4))
    return c0 + c1 * a + (c2 + c3 * a) * b


def relax(a: jax.Array, b: jax.Array, probs: jax.Array) -> jax.Array:
    """Expected gate output sum_k probs_k gate_k(a, b), computed through 4 coefficients.

    Args:
      a, b: gate inputs in [0, 1], shape (..., n).
      probs: gate weights, shape (n, 16) (shared by the batch) or (..., n, 16) (per example).

    Returns:
      (..., n). With one-hot `probs` and inputs in {0, 1} this is the exact Boolean gate.
    """
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if probs.ndim < 2 or probs.shape[-2] != a.shape[-1]:
        raise ValueError(
            f"probs must be (n, 16) or (..., n, 16) with n = a.shape[-1] = {a.shape[-1]}; "
            f"got shape {probs.shape}"
        )
    return apply_coefficients(a, b, gate_coefficients(probs))


# ----------------------------------------------------------------------------------------------
# Wiring


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
    inv = np.full((in_dim, max(1, int(counts.max(initial=0)))), flat.size, dtype=np.int32)
    inv[flat[order], rank] = order
    return inv


# ----------------------------------------------------------------------------------------------
# The layer


def _gather_rows(x_IxB: jax.Array, idx_K: jax.Array) -> jax.Array:
    # The tables are in bounds by construction: "clip" only adds a fused clamp.
    return jnp.take(x_IxB, idx_K, axis=0, mode="clip")


def _gather_rows_transpose(dy_KxB: jax.Array, inv_IxF: jax.Array) -> jax.Array:
    """dx[i] = sum_f dy[inv[i, f]], entries inv == K reading 0: the transpose of `_gather_rows`.

    One row gather per fan-out slot f (F is small and static) fused into one elementwise sum;
    gathering to (I, F, B) and reducing over F measured 8x slower on CPU. mode="fill" reads the
    pad entries as 0 without materialising a zero-padded copy of dy.
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


def logic_layer(
    x_IxB: jax.Array, coef: jax.Array, idx_2N: jax.Array, inv_IxF: jax.Array
) -> jax.Array:
    """One logic layer, neuron-major: out_j = c_j0 + c_j1 a_j + c_j2 b_j + c_j3 a_j b_j.

    Neuron-major (I, B) rather than (B, I): the wiring gather then moves whole contiguous rows
    of B values (coalesced reads on GPU, memcpy-like on CPU, about 5x faster than gathering
    columns there), and the coefficient gradient reduces along the contiguous batch axis.

    The backward is written out (a custom VJP): regather a, b from x (cheaper than storing
    them), then da = g (c1 + c3 b), db = g (c2 + c3 a), dc = sum_batch g (1, a, b, ab), and
    dx = the transposed gather of (da, db) via the inverse wiring. Left to autodiff, XLA's CPU
    fusions of the same computation ran 5x slower.

    Args:
      x_IxB: (I, B) inputs in [0, 1] (any trailing batch shape, or none).
      coef: (N, 4) per-neuron coefficients (`gate_coefficients`), or (N, B, 4) per example.
      idx_2N, inv_IxF: the tables of `wiring_tables` (a-inputs first, then b-inputs).

    Returns:
      (N, B) outputs.
    """
    n = coef.shape[0]
    if idx_2N.shape != (2 * n,):
        raise ValueError(f"flat wiring must have shape (2 * {n},), got {idx_2N.shape}")
    if coef.shape[-1] != 4 or coef.ndim not in (2, x_IxB.ndim + 1):
        raise ValueError(
            f"coef must be (N, 4) or (N, *batch, 4) with batch = x.shape[1:] = {x_IxB.shape[1:]}; "
            f"got {coef.shape}"
        )
    return _logic_layer(x_IxB, coef, idx_2N, inv_IxF)


def _broadcast_coef(coef, batch_ndim):
    if coef.ndim == 2:  # shared by the batch: (N, 4) -> (N, 1, ..., 1, 4)
        coef = coef.reshape(coef.shape[0], *(1,) * batch_ndim, 4)
    return coef


def _logic_layer_fwd(x_IxB, coef, idx_2N, inv_IxF):
    n = coef.shape[0]
    ab_2NxB = _gather_rows(x_IxB, idx_2N)
    coef = _broadcast_coef(coef, x_IxB.ndim - 1)
    return apply_coefficients(ab_2NxB[:n], ab_2NxB[n:], coef)


@jax.custom_vjp
def _logic_layer(x_IxB, coef, idx_2N, inv_IxF):
    return _logic_layer_fwd(x_IxB, coef, idx_2N, inv_IxF)


def _logic_layer_vjp_fwd(x_IxB, coef, idx_2N, inv_IxF):
    return _logic_layer_fwd(x_IxB, coef, idx_2N, inv_IxF), (x_IxB, coef, idx_2N, inv_IxF)


def _logic_layer_vjp_bwd(res, g_NxB):
    x_IxB, coef, idx_2N, inv_IxF = res
    n = coef.shape[0]
    ab_2NxB = _gather_rows(x_IxB, idx_2N)
    a_NxB, b_NxB = ab_2NxB[:n], ab_2NxB[n:]
    c = _broadcast_coef(coef, x_IxB.ndim - 1)
    c1, c2, c3 = c[..., 1], c[..., 2], c[..., 3]
    ga_NxB = g_NxB * a_NxB
    terms = [g_NxB, ga_NxB, g_NxB * b_NxB, ga_NxB * b_NxB]  # d out / d (c0, c1, c2, c3)
    if coef.ndim == 2:  # shared coefficients: sum over the batch (a contiguous row each)
        terms = [t.sum(axis=tuple(range(1, g_NxB.ndim))) for t in terms]
    dcoef = jnp.stack(terms, axis=-1)
    dab_2NxB = jnp.concatenate([g_NxB * (c1 + c3 * b_NxB), g_NxB * (c2 + c3 * a_NxB)])
    return _gather_rows_transpose(dab_2NxB, inv_IxF), dcoef.astype(coef.dtype), None, None


_logic_layer.defvjp(_logic_layer_vjp_fwd, _logic_layer_vjp_bwd)


def group_sum(x_BxN: jax.Array, n_classes: int = 10, tau: float = 100.0) -> jax.Array:
    """GroupSum: class logits y_c = (1 / tau) sum of the c-th contiguous block of N / n_classes.

    Args:
      x_BxN: (..., N) neuron outputs, N divisible by n_classes.

    Returns:
      (..., n_classes) logits.
    """
    n = x_BxN.shape[-1]
    if n % n_classes:
        raise ValueError(
            f"group_sum needs the width ({n}) to be divisible by n_classes ({n_classes})"
        )
    return x_BxN.reshape(*x_BxN.shape[:-1], n_classes, n // n_classes).sum(-1) / tau
