"""Exact bit-packed evaluation of the discretised network: with one gate per neuron (the
argmax of its logits) the network is a Boolean circuit, so one bit per (neuron, example) does,
32 examples to a uint32 word.

Activations stay neuron-major, x_DxW with W = ceil(n / 32): a layer is the same row gather as
`logic_layer` (32 times fewer bytes) and a few bitwise ops that evaluate 32 examples at once.
Everything is exact: the float network on {0, 1} inputs with one-hot gates computes the same
bits, and its group sums are these integer counts divided by tau.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from dst_jax.logic.wiring import _gather_rows

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
        # (CPU) fuses the reduction into the transpose and reads x column by column, far slower
        # (docs/PERFORMANCE.md). A loop's outputs are always materialised, and x is read in
        # place by dynamic slices (no copy).
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
    # byte extraction below, which reads each sum 4 times, and recompute them
    # (docs/PERFORMANCE.md). A loop's outputs are materialised.
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
