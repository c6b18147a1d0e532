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

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

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
    width = max(1, int(np.max(counts))) if counts.size else 1  # a column even when nothing is read
    inv = np.full((in_dim, width), flat.size, dtype=np.int32)
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

    The backward is written out (a custom VJP): regather a, b from x (where forward and
    backward are one program XLA reuses the forward's gathers), then da = g (c1 + c3 b),
    db = g (c2 + c3 a), dc = sum_batch g (1, a, b, ab), and dx = the transposed gather of
    (da, db) via the inverse wiring. Left to autodiff, XLA's CPU fusions of the same computation
    ran 5x slower.

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


def _gather_pair(x_IxB, idx_2N, n):
    """(a, b) = (x[idx[:n]], x[idx[n:]]), each (N, B).

    Two gathers rather than one of 2N rows split in halves: XLA (CPU) copies each half of the
    2N-row gather into a buffer of its own wherever several fusions read it (the forward's
    output and the backward's reductions), two extra passes over 2 x N x B floats per layer
    and step (a sixth to a quarter of the training step at 4 x 12,000 x 100).
    """
    a_NxB = _gather_rows(x_IxB, jax.lax.slice_in_dim(idx_2N, 0, n))
    b_NxB = _gather_rows(x_IxB, jax.lax.slice_in_dim(idx_2N, n, 2 * n))
    return a_NxB, b_NxB


def _logic_layer_fwd(x_IxB, coef, idx_2N, inv_IxF):
    a_NxB, b_NxB = _gather_pair(x_IxB, idx_2N, coef.shape[0])
    return apply_coefficients(a_NxB, b_NxB, _broadcast_coef(coef, x_IxB.ndim - 1))


@jax.custom_vjp
def _logic_layer(x_IxB, coef, idx_2N, inv_IxF):
    return _logic_layer_fwd(x_IxB, coef, idx_2N, inv_IxF)


def _logic_layer_vjp_fwd(x_IxB, coef, idx_2N, inv_IxF):
    return _logic_layer_fwd(x_IxB, coef, idx_2N, inv_IxF), (x_IxB, coef, idx_2N, inv_IxF)


def _logic_layer_vjp_bwd(res, g_NxB):
    x_IxB, coef, idx_2N, inv_IxF = res
    a_NxB, b_NxB = _gather_pair(x_IxB, idx_2N, coef.shape[0])
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


def packed_input_layer(
    x_words_IxW: jax.Array, coef: jax.Array, idx_2N: jax.Array, n_examples: int
) -> jax.Array:
    """`logic_layer` on {0, 1} inputs given bit-packed (`pack_bits`): (N, n_examples) float32.

    out_j = c_j0 + c_j1 a_j + c_j2 b_j + c_j3 a_j b_j with a_j, b_j the bits of inputs idx[j],
    idx[N + j], unpacked where they are read; the same values as `logic_layer` on the unpacked
    floats, and the same coefficient gradient, dc = sum_batch g (1, a, b, ab) (per example for
    (N, B, 4) coefficients). The inputs are data: no input gradient, so no inverse wiring.

    For a first layer on binary data, the gather then moves 1 bit per example instead of a
    float32, and the backward reads the gathered words again instead of two float (N, B)
    arrays: on CPU at 9,216 -> 12,000 x 100 it saved about a ninth of the training step
    (the float path also needs the (B, D) -> (D, B) transpose, `neuron_major`).

    Args:
      x_words_IxW: uint32 (I, W) packed inputs, W >= ceil(n_examples / 32).
      coef: (N, 4) coefficients, or (N, n_examples, 4) per example.
      idx_2N: int32 (2N,) the flat wiring table.
      n_examples: static, the examples packed in the words (padding bits are dropped).
    """
    n = coef.shape[0]
    if idx_2N.shape != (2 * n,):
        raise ValueError(f"flat wiring must have shape (2 * {n},), got {idx_2N.shape}")
    if coef.shape[-1] != 4 or coef.ndim not in (2, 3):
        raise ValueError(f"coef must be (N, 4) or (N, {n_examples}, 4); got {coef.shape}")
    if x_words_IxW.ndim != 2 or x_words_IxW.shape[1] * WORD_BITS < n_examples:
        raise ValueError(
            f"packed inputs must be (I, W) words holding {n_examples} examples, got shape "
            f"{x_words_IxW.shape}"
        )
    return _packed_input_layer(x_words_IxW, coef, idx_2N, n_examples)


def _unpacked_pair(x_words_IxW, idx_2N, n, n_examples):
    """(a, b) float32 (N, n_examples) from the gathered words of the a- and b-inputs."""
    a_NxW, b_NxW = _gather_pair(x_words_IxW, idx_2N, n)
    a_NxB = _word_bits(a_NxW)[:, :n_examples].astype(jnp.float32)
    b_NxB = _word_bits(b_NxW)[:, :n_examples].astype(jnp.float32)
    return a_NxB, b_NxB


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _packed_input_layer(x_words_IxW, coef, idx_2N, n_examples):
    a_NxB, b_NxB = _unpacked_pair(x_words_IxW, idx_2N, coef.shape[0], n_examples)
    return apply_coefficients(a_NxB, b_NxB, _broadcast_coef(coef, 1))


def _packed_input_layer_fwd(x_words_IxW, coef, idx_2N, n_examples):
    out = _packed_input_layer(x_words_IxW, coef, idx_2N, n_examples)
    return out, (x_words_IxW, coef, idx_2N)


def _packed_input_layer_bwd(n_examples, res, g_NxB):
    x_words_IxW, coef, idx_2N = res
    a_NxB, b_NxB = _unpacked_pair(x_words_IxW, idx_2N, coef.shape[0], n_examples)
    ga_NxB = g_NxB * a_NxB
    terms = [g_NxB, ga_NxB, g_NxB * b_NxB, ga_NxB * b_NxB]
    if coef.ndim == 2:
        terms = [t.sum(axis=1) for t in terms]
    return None, jnp.stack(terms, axis=-1).astype(coef.dtype), None


_packed_input_layer.defvjp(_packed_input_layer_fwd, _packed_input_layer_bwd)


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


def group_sum_neuron_major(x_NxB: jax.Array, n_classes: int = 10, tau: float = 100.0) -> jax.Array:
    """GroupSum of neuron-major outputs: (B, n_classes), y[b, c] = (1 / tau) sum of rows
    c G .. (c + 1) G - 1 of x[:, b], G = N / n_classes.

    Equal to `group_sum(x.T, n_classes, tau)` up to the order of the float additions (exactly,
    for integer-valued outputs). Summing over the neuron axis where it lies avoids transposing
    the whole (N, B) last layer, a strided copy that XLA (CPU) fuses with the layer's
    evaluation (5-10% of the training step at 4 x 12,000 x 100).
    """
    n = x_NxB.shape[0]
    if n % n_classes:
        raise ValueError(
            f"group_sum needs the width ({n}) to be divisible by n_classes ({n_classes})"
        )
    sums_CxB = x_NxB.reshape(n_classes, n // n_classes, *x_NxB.shape[1:]).sum(1)
    return jnp.moveaxis(sums_CxB, 0, -1) / tau


def _transpose_by_matmul(x_BxD: jax.Array) -> jax.Array:
    eye_BxB = jnp.eye(x_BxD.shape[0], dtype=x_BxD.dtype)
    # HIGHEST keeps every product x * 1 exact (no bfloat16 or TF32 passes).
    return jnp.einsum("bd,bc->dc", x_BxD, eye_BxB, precision=jax.lax.Precision.HIGHEST)


def neuron_major(x_BxD: jax.Array) -> jax.Array:
    """Float32 inputs (B, D) -> (D, B), the layout `logic_layer` reads, materialised.

    On CPU the transpose is computed as `x^T I` (an exact matrix product: every output is one
    input times 1 plus zeros, for finite inputs): XLA (CPU) fuses a plain transpose into the
    first layer's gather, which then reads x column by column, 100 strided reads per gathered
    row (16 ms against 3-5 ms per gather after the product, in one profile at 9,216 x 100); a
    product's output is always its own buffer. Other platforms transpose.
    """
    x = x_BxD.astype(jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"neuron_major needs (batch, inputs), got shape {x_BxD.shape}")
    return jax.lax.platform_dependent(x, cpu=_transpose_by_matmul, default=jnp.transpose)


# ----------------------------------------------------------------------------------------------
# Exact bit-packed evaluation of the discretised network
#
# With one gate per neuron (the argmax of its logits) the network is a Boolean circuit, so its
# evaluation needs one bit per (neuron, example), not a float. Activations stay neuron-major but
# pack 32 examples into each uint32 word, x_DxW with W = ceil(n / 32): a layer is then the same
# row gather as `logic_layer` (32 times fewer bytes) and a few bitwise ops that evaluate 32
# examples at once. Everything is exact: the float network on {0, 1} inputs with one-hot gates
# computes the same bits, and its group sums are these integer counts divided by tau.

WORD_BITS = 32


def n_words(n_examples: int) -> int:
    """W = ceil(n_examples / 32): the uint32 words that hold one neuron's bits of n examples."""
    return -(-int(n_examples) // WORD_BITS)


# Examples per `pack_bits` loop step: 8 words = 256 rows of x.
_PACK_BLOCK_WORDS = 8


def _pack_rows(x_RxD: jax.Array) -> jax.Array:
    """(R, D) -> uint32 (ceil(R / 32), D): word w of column d holds rows 32 w .. 32 w + 31."""
    r, d = x_RxD.shape
    w = n_words(r)
    bits_RxD = (x_RxD != 0).astype(jnp.uint32)
    bits_WxBxD = jnp.pad(bits_RxD, ((0, w * WORD_BITS - r), (0, 0))).reshape(w, WORD_BITS, d)
    shift_B = jnp.arange(WORD_BITS, dtype=jnp.uint32)
    # The 32 shifted bits are distinct powers of two, so their sum is their bitwise OR; the
    # reduction runs over the middle axis with D contiguous, reading x once in its own layout.
    return jnp.sum(bits_WxBxD << shift_B[None, :, None], axis=1, dtype=jnp.uint32)


def pack_bits(x_NxD: jax.Array) -> jax.Array:
    """Pack {0, 1} inputs neuron-major: words[d, n // 32] has bit n % 32 set iff x[n, d] != 0.

    Args:
      x_NxD: (N, D) inputs of N examples, any dtype (bool, uint8, float); nonzero reads as 1.

    Returns:
      uint32 (D, W), W = ceil(N / 32); the padding bits of the last word (examples N..32W-1)
      are 0.
    """
    if x_NxD.ndim != 2:
        raise ValueError(f"pack_bits needs (examples, inputs), got shape {x_NxD.shape}")
    n, d = x_NxD.shape
    rows = _PACK_BLOCK_WORDS * WORD_BITS
    steps = n // rows
    parts = []
    if steps >= 2:
        # Packed (W, D) words come out of a vectorised reduction over x's rows; the transpose
        # to (D, W) must then run on the materialised words. Written as one expression, XLA
        # (CPU) fuses the reduction into the transpose and reads x column by column: 30x slower
        # at 10,000 x 9,216 (0.4 s against 15 ms). A loop's outputs are always materialised,
        # and x is read in place by dynamic slices (no copy).
        def block(i):
            return _pack_rows(jax.lax.dynamic_slice_in_dim(x_NxD, i * rows, rows, axis=0))

        parts.append(jax.lax.map(block, jnp.arange(steps)).reshape(-1, d))
    else:
        steps = 0
    if steps * rows < n:
        parts.append(_pack_rows(x_NxD[steps * rows :]))
    return jnp.concatenate(parts).T


def _word_bits(words: jax.Array) -> jax.Array:
    """(..., W) uint32 -> (..., 32 W) uint8: bit b of word w at position 32 w + b."""
    shift_B = jnp.arange(WORD_BITS, dtype=jnp.uint32)
    bits = (words[..., None] >> shift_B) & jnp.uint32(1)
    return bits.reshape(*words.shape[:-1], -1).astype(jnp.uint8)


def unpack_bits(words_DxW: jax.Array, n_examples: int) -> jax.Array:
    """Inverse of `pack_bits`: uint8 (n_examples, D) with x[n, d] = bit n % 32 of words[d, n // 32].

    `n_examples` (static, at most 32 W) drops the padding bits.
    """
    if n_examples > words_DxW.shape[-1] * WORD_BITS:
        raise ValueError(
            f"{words_DxW.shape[-1]} words per row hold at most {words_DxW.shape[-1] * WORD_BITS} "
            f"examples, asked for {n_examples}"
        )
    return _word_bits(words_DxW)[:, :n_examples].T


def gate_masks(gates_N: jax.Array) -> jax.Array:
    """Truth-table masks of each neuron's gate: uint32 (N, 4), columns (m00, m01, m10, m11).

    m_ab is all ones (0xFFFFFFFF) if gate k outputs 1 on inputs (a, b), i.e. if bit 3 - 2a - b of
    k is set (difflogic's order, see `GATE_NAMES`), and all zeros otherwise, so that on packed
    words a, b

        out = (m00 & ~a & ~b) | (m01 & ~a & b) | (m10 & a & ~b) | (m11 & a & b)

    (`apply_gate_masks`). `packed_layer` uses the cheaper equivalent form of `gate_xor_masks`.

    Args:
      gates_N: int (N,) gate indices in [0, 16).
    """
    shift_4 = jnp.array([3, 2, 1, 0], dtype=jnp.int32)  # (a, b) = (0,0), (0,1), (1,0), (1,1)
    bits_Nx4 = (jnp.asarray(gates_N, jnp.int32)[..., None] >> shift_4) & 1
    return bits_Nx4.astype(jnp.uint32) * jnp.uint32(0xFFFFFFFF)


def apply_gate_masks(a_NxW: jax.Array, b_NxW: jax.Array, masks_Nx4: jax.Array) -> jax.Array:
    """The truth-table form: out = OR over (i, j) of m_ij & (a == i) & (b == j), bitwise.

    Args:
      a_NxW, b_NxW: uint32 packed gate inputs (N, W).
      masks_Nx4: `gate_masks` (N, 4).
    """
    m00, m01, m10, m11 = (masks_Nx4[:, i, None] for i in range(4))
    na, nb = ~a_NxW, ~b_NxW
    return (m00 & na & nb) | (m01 & na & b_NxW) | (m10 & a_NxW & nb) | (m11 & a_NxW & b_NxW)


def gate_xor_masks(gates_N: jax.Array) -> jax.Array:
    """Masks of the algebraic normal form (XOR of ANDs): uint32 (N, 4), columns (k1, ka, kb, kab),

        out = k1 ^ (ka & a) ^ (kb & b) ^ (kab & a & b)
            = k1 ^ (kb & b) ^ (a & (ka ^ (kab & b)))      (2 ANDs and 3 XORs per word),

    with, from the truth-table masks of `gate_masks`, k1 = m00, ka = m00 ^ m10, kb = m00 ^ m01,
    kab = m00 ^ m01 ^ m10 ^ m11 (the GF(2) analogue of the coefficients in `GATE_COEF_16x4`).
    """
    m00, m01, m10, m11 = (m[..., 0] for m in jnp.split(gate_masks(gates_N), 4, axis=-1))
    return jnp.stack([m00, m00 ^ m10, m00 ^ m01, m00 ^ m01 ^ m10 ^ m11], axis=-1)


def packed_layer(x_IxW: jax.Array, gates_N: jax.Array, idx_2N: jax.Array) -> jax.Array:
    """One discretised logic layer on packed bits: out_j = gate_{g_j}(x[a_j], x[b_j]) bitwise.

    Args:
      x_IxW: uint32 (I, W) packed inputs (`pack_bits`), or (I, ...) with any trailing shape.
      gates_N: int (N,) gate index per neuron (e.g. `argmax` of its logits).
      idx_2N: int32 (2N,) the flat wiring table of `wiring_tables`: a_j = idx[j], b_j = idx[N + j].

    Returns:
      uint32 (N, W). Padding bits carry arbitrary values (a NOT of a padding 0 is 1); readers
      drop them (`packed_group_counts` keeps only the first n_examples bits).
    """
    n = gates_N.shape[0]
    if idx_2N.shape != (2 * n,):
        raise ValueError(f"flat wiring must have shape (2 * {n},), got {idx_2N.shape}")
    ab_2NxW = _gather_rows(x_IxW, idx_2N)
    a_NxW, b_NxW = ab_2NxW[:n], ab_2NxW[n:]
    k = gate_xor_masks(gates_N).reshape(n, *(1,) * (x_IxW.ndim - 1), 4)
    k1, ka, kb, kab = (k[..., i] for i in range(4))
    return k1 ^ (kb & b_NxW) ^ (a_NxW & (ka ^ (kab & b_NxW)))


def packed_group_counts(h_NxW: jax.Array, n_examples: int, n_classes: int) -> jax.Array:
    """GroupSum without the 1 / tau: counts[n, c] = number of ones of example n in group c.

    Group c is the contiguous block of neurons [c G, (c + 1) G), G = N / n_classes, as in
    `group_sum`, so `group_sum(h.T, n_classes, tau) == counts / tau` for the float network.

    Counted in SWAR byte lanes, 32 examples per word: for k = 0..7 the word
    (h >> k) & 0x01010101 holds the bits of examples 8j + k (j = 0..3) in separate bytes, so a
    uint32 sum over at most 255 rows gives their four counts without a carry across bytes.
    Groups are summed in chunks of at most 255 rows; the bytes are then split off and the
    chunks added in int32. That is 8 vectorised reductions over the rows (3 ops per word each),
    against 96 ops per word for unpacking every bit first.

    Args:
      h_NxW: uint32 (N, W) packed last-layer outputs, N divisible by n_classes.
      n_examples: examples to keep (static, at most 32 W); padding bits are dropped.
      n_classes: number of groups.

    Returns:
      int32 (n_examples, n_classes).
    """
    n, w = h_NxW.shape
    if n % n_classes:
        raise ValueError(
            f"group counts need the width ({n}) to be divisible by n_classes ({n_classes})"
        )
    if n_examples > w * WORD_BITS:
        raise ValueError(f"{w} words hold at most {w * WORD_BITS} examples, asked for {n_examples}")
    g = n // n_classes
    n_chunks = -(-g // 255)
    r = -(-g // n_chunks)  # rows per chunk, <= 255
    h_CxKxRxW = jnp.pad(
        h_NxW.reshape(n_classes, g, w), ((0, 0), (0, n_chunks * r - g), (0, 0))
    ).reshape(n_classes, n_chunks, r, w)

    def lane_sums(k):
        return jnp.sum((h_CxKxRxW >> k) & jnp.uint32(0x01010101), axis=2, dtype=jnp.uint32)

    # A loop over k, not one expression: XLA (CPU) would otherwise fuse the reductions into the
    # byte extraction below, which reads each sum 4 times, and recompute them (4x slower at
    # 12,000 x 10,000). A loop's outputs are materialised.
    sums_8xCxKxW = jax.lax.map(lane_sums, jnp.arange(8, dtype=jnp.uint32))
    shift_4 = jnp.arange(0, WORD_BITS, 8, dtype=jnp.uint32)
    bytes_8xCxKxWx4 = (sums_8xCxKxW[..., None] >> shift_4) & jnp.uint32(0xFF)
    counts_8xCxWx4 = bytes_8xCxKxWx4.astype(jnp.int32).sum(axis=2)
    # Example 32 w + 8 j + k sits at (k, c, w, j).
    counts_CxN = counts_8xCxWx4.transpose(1, 2, 3, 0).reshape(n_classes, w * WORD_BITS)
    return counts_CxN[:, :n_examples].T


def packed_forward(
    gates: Sequence[jax.Array],
    wirings: Sequence[jax.Array],
    x_DxW: jax.Array,
    n_examples: int,
    n_classes: int,
    block_words: int | None = None,
) -> jax.Array:
    """Class counts of the discretised network on packed inputs: int32 (n_examples, n_classes).

    h_0 = x; h_l = packed_layer(h_{l-1}, gates[l], wirings[l]); counts = group counts of h_L.

    Args:
      gates: per layer, int (N_l,) gate indices.
      wirings: per layer, the flat int32 (2 N_l,) table (as `wiring_tables`; for the dlgn task
        `network_wirings(data)`).
      x_DxW: uint32 (D, W) packed inputs (`pack_bits`), n_examples <= 32 W.
      n_examples, n_classes: static.
      block_words: evaluate in slices of this many words (32 * block_words examples) under
        `lax.map`, to bound the activation memory (and keep a slice's layer in cache); None: all
        W words at once.
    """
    if len(gates) != len(wirings):
        raise ValueError(f"{len(gates)} layers of gates for {len(wirings)} wiring tables")

    gates, wirings = list(gates), list(wirings)
    same_width = all(g.shape == gates[0].shape for g in gates)
    if same_width and len(gates) > 2:
        hidden = (jnp.stack(gates[1:]), jnp.stack([jnp.asarray(t) for t in wirings[1:]]))

    def counts(x_DxB, n):
        h = packed_layer(x_DxB, gates[0], wirings[0])
        if same_width and len(gates) > 2:
            # A scan over the hidden layers materialises every layer's output. Written as
            # straight-line code, XLA (CPU) fuses layer l into layer l+1's gather and recomputes
            # each layer once per reader, 2x per layer below (lax.optimization_barrier does not
            # stop it: XLA drops the barrier before fusion).
            h, _ = jax.lax.scan(lambda h, gw: (packed_layer(h, *gw), None), h, hidden)
        else:
            for g, idx in zip(gates[1:], wirings[1:], strict=True):
                h = packed_layer(h, g, idx)
        # The group counts loop reads h as a loop operand, so the last layer is materialised.
        return packed_group_counts(h, n, n_classes)

    d, w = x_DxW.shape
    if block_words is None or block_words >= w:
        return counts(x_DxW, n_examples)
    s = -(-w // block_words)
    x_DxSW = jnp.pad(x_DxW, ((0, 0), (0, s * block_words - w)))
    x_SxDxB = x_DxSW.reshape(d, s, block_words).transpose(1, 0, 2)
    counts_SxBxC = jax.lax.map(lambda x: counts(x, block_words * WORD_BITS), x_SxDxB)
    return counts_SxBxC.reshape(-1, n_classes)[:n_examples]


@functools.partial(jax.jit, static_argnames=("n_classes", "block_words"))
def packed_predict(
    gates: Sequence[jax.Array],
    wirings: Sequence[jax.Array],
    x_bits_NxD: jax.Array,
    n_classes: int,
    block_words: int | None = 64,
) -> jax.Array:
    """Predictions of the discretised network: int32 (N,) = argmax_c counts[n, c].

    Packs x (`pack_bits`) and runs `packed_forward`; ties go to the lower class index, as
    `jnp.argmax` of the float logits counts / tau does. Jitted (n_classes and block_words
    static); vmappable over a leading grid axis of `gates` with the wiring shared.

    Args:
      gates: per layer, int (N_l,) gate indices.
      wirings: per layer, the flat int32 (2 N_l,) wiring table.
      x_bits_NxD: (N, D) {0, 1} inputs (bool, uint8 or float).
      n_classes: number of class groups of the last layer.
      block_words: see `packed_forward` (64 words = 2,048 examples per slice).
    """
    n = x_bits_NxD.shape[0]
    counts_NxC = packed_forward(gates, wirings, pack_bits(x_bits_NxD), n, n_classes, block_words)
    return jnp.argmax(counts_NxC, axis=-1).astype(jnp.int32)


def network_wirings(data: Mapping[str, Any]) -> list[jax.Array]:
    """The per-layer flat (2N,) wiring tables of a dlgn `data` dict (`wiring_in`, then the rows
    of `wiring_hidden`)."""
    hidden = data["wiring_hidden"]
    return [data["wiring_in"], *(hidden[i] for i in range(hidden.shape[0]))]


def predict_from_logits(
    gate_logits: Sequence[jax.Array],
    data: Mapping[str, Any],
    n_classes: int,
    x_bits_NxD: jax.Array | None = None,
    block_words: int | None = 64,
) -> jax.Array:
    """Predictions of the network whose gates are argmax(gate_logits) (ties to the lower gate
    index, like `argmax_coefficients`), wired as in the dlgn `data` dict.

    Args:
      gate_logits: per layer, (N_l, 16) logits, e.g. `params["gate_logits"]`.
      data: the dlgn task's data dict; only its wiring tables and (by default) `test_x` are read.
      n_classes: number of class groups.
      x_bits_NxD: (N, D) {0, 1} inputs; default data["test_x"].
      block_words: see `packed_forward`.

    Returns:
      int32 (N,) predicted classes, equal to the float network's argmax of
      `DLGNTask.forward([argmax_coefficients(l) for l in gate_logits], x, data)`.
    """
    x = data["test_x"] if x_bits_NxD is None else x_bits_NxD
    gates = [jnp.argmax(lg, axis=-1) for lg in gate_logits]
    return packed_predict(gates, network_wirings(data), x, n_classes, block_words)
