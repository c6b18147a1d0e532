"""The 16 two-input gates and their relaxations: one gate is four coefficients (c0 + c1 a +
c2 b + c3 ab), so a layer's 16-way choice collapses to a (neurons, 4) array before it touches
the activations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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
