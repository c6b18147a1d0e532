"""The float (trainable) logic layer, its bit-packed first layer and GroupSum: neuron-major
activations and hand-written backward passes, because those are what make a layer of 12,000
neurons cheap on a CPU (docs/PERFORMANCE.md, "Logic-gate kernels")."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dst_jax.logic.gates import apply_coefficients
from dst_jax.logic.packed import WORD_BITS, _word_bits
from dst_jax.logic.wiring import _gather_rows, _gather_rows_transpose


def logic_layer(
    x_IxB: jax.Array, coef: jax.Array, idx_2N: jax.Array, inv_IxF: jax.Array
) -> jax.Array:
    """One logic layer, neuron-major: out_j = c_j0 + c_j1 a_j + c_j2 b_j + c_j3 a_j b_j.

    Neuron-major (I, B) rather than (B, I): the wiring gather then moves whole contiguous rows
    of B values (coalesced reads on GPU, memcpy-like on CPU, much faster than gathering
    columns there), and the coefficient gradient reduces along the contiguous batch axis.

    The backward is written out (a custom VJP): regather a, b from x (where forward and
    backward are one program XLA reuses the forward's gathers), then da = g (c1 + c3 b),
    db = g (c2 + c3 a), dc = sum_batch g (1, a, b, ab), and dx = the transposed gather of
    (da, db) via the inverse wiring. Left to autodiff, XLA's CPU fusions of the same computation
    are several times slower (docs/PERFORMANCE.md, "Logic-gate kernels").

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
    first layer's gather, which then reads x column by column, B strided reads per gathered
    row (docs/PERFORMANCE.md, "Logic-gate kernels"); a product's output is always its own
    buffer. Other platforms transpose.
    """
    x = x_BxD.astype(jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"neuron_major needs (batch, inputs), got shape {x_BxD.shape}")
    return jax.lax.platform_dependent(x, cpu=_transpose_by_matmul, default=jnp.transpose)
