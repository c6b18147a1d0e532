"""The exact expectation and gradient over every code of L categorical latents, and f tabulated at
the codes: the references every estimator's draws are measured against.

For L categorical latents of C classes there are Z = C^L codes (4,096 for the `cae` task's
4 x 8). For one input x with encoder logits `l_LxC` and a per-code objective `f(z) = f(z; x)`::

    q(z; l, tau)   = prod_i softmax(l_i / tau)[z_i]                   (z a code, z_i its classes)
    F_tau(l)       = E_{z ~ q(.; l, tau)} f(z) = sum_z q(z; l, tau) f_Z[z]
    g_tau          = grad_l F_tau(l)                                  the exact gradient, (L, C)

Once f is known at every code (`f_Z`, Z decoder passes), `g_tau` is the gradient of a sum of Z
terms, for any tau.

Tabulated codes. A draw's gradient is `J_est^T grad_z f(z)` at the sampled one-hot z, so f and its
gradient are needed only at the Z codes: `tabulate` computes both once per input, and `tabulated`
turns the tables into a function whose value and gradient at a one-hot z are those of f. This
takes the decoder out of the N x (grid) draws, and it is exact (the tests compare it with autodiff
through the decoder). It is valid only for estimators whose forward value is one-hot, which is
what `Estimator.discrete` promises.

Codes are numbered with the first latent most significant: code index
`sum_i z_i C^(L-1-i)`, the order of `all_codes`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

__all__ = [
    "all_codes",
    "code_index",
    "exact_gradient",
    "expectation",
    "log_q",
    "one_hot_codes",
    "tabulate",
    "tabulated",
]

Array = jax.Array

# ----------------------------------------------------------------------------------------------
# Codes.


def all_codes(n_latents: int, n_classes: int) -> Array:
    """Every code as class indices, int32 (C^L, L), first latent most significant.

    Built from an iota rather than a literal table, so the program holds no Z x L constant.
    """
    n_codes = n_classes**n_latents
    place_L = n_classes ** jnp.arange(n_latents - 1, -1, -1, dtype=jnp.int32)
    return (jnp.arange(n_codes, dtype=jnp.int32)[:, None] // place_L) % n_classes


def one_hot_codes(n_latents: int, n_classes: int, dtype: jnp.dtype = jnp.float32) -> Array:
    """Every code one-hot, (C^L, L, C) in `dtype`, in the order of `all_codes`."""
    return jax.nn.one_hot(all_codes(n_latents, n_classes), n_classes, dtype=dtype)


def code_index(z_LxC: Array) -> Array:
    """The index `sum_i argmax(z_i) C^(L-1-i)` of a one-hot code (L, C); int32 scalar."""
    n_latents, n_classes = z_LxC.shape
    place_L = n_classes ** jnp.arange(n_latents - 1, -1, -1, dtype=jnp.int32)
    return jnp.sum(jnp.argmax(z_LxC, axis=-1).astype(jnp.int32) * place_L)


# ----------------------------------------------------------------------------------------------
# Exact expectations and gradients.


def _shape_of(f_Z: Array, l_LxC: Array) -> tuple[int, int]:
    if l_LxC.ndim != 2:
        raise ValueError(f"logits must have shape (L, C), got {l_LxC.shape}")
    n_latents, n_classes = l_LxC.shape
    if f_Z.shape != (n_classes**n_latents,):
        raise ValueError(
            f"f_Z must hold one value per code, shape ({n_classes**n_latents},) for logits of "
            f"shape {l_LxC.shape}; got {f_Z.shape}"
        )
    return n_latents, n_classes


def log_q(l_LxC: Array, tau: ArrayLike) -> Array:
    """log q(z; l, tau) = sum_i log_softmax(l_i / tau)[z_i] for every code z; (C^L,).

    A contraction of the one-hot codes (Z, L, C) with the log-probabilities (L, C): a matmul
    forward and backward, where a gather would differentiate into a scatter.
    """
    n_latents, n_classes = l_LxC.shape
    logp_LxC = jax.nn.log_softmax(l_LxC / tau, axis=-1)
    z_ZxLxC = one_hot_codes(n_latents, n_classes, logp_LxC.dtype)
    return jnp.einsum("zlc,lc->z", z_ZxLxC, logp_LxC)


def expectation(f_Z: Array, l_LxC: Array, tau: ArrayLike = 1.0) -> Array:
    """F_tau(l) = sum_z q(z; l, tau) f_Z[z], the exact expectation; scalar."""
    _shape_of(f_Z, l_LxC)
    return jnp.sum(jnp.exp(log_q(l_LxC, tau)) * f_Z)


def exact_gradient(f_Z: Array, l_LxC: Array, tau: ArrayLike = 1.0) -> Array:
    """g_tau = grad_l sum_z q(z; l, tau) f_Z[z], the exact gradient; (L, C), dtype of l.

    Computed as the gradient of `sum_z q(z) (f_Z[z] - b)` with `b = sg(F_tau(l))`: the same
    gradient (`sum_z q(z) = 1` for every l), without the cancellation between terms of size
    `|f|` when the gradient is much smaller than f itself (summed pixel BCEs are in the hundreds).
    """
    _shape_of(f_Z, l_LxC)

    def centred(l_LxC):
        q_Z = jnp.exp(log_q(l_LxC, tau))
        b = lax.stop_gradient(jnp.sum(q_Z * f_Z))
        return jnp.sum(q_Z * (f_Z - b))

    return jax.grad(centred)(l_LxC)


# ----------------------------------------------------------------------------------------------
# Tabulated objective.


def tabulate(
    f: Callable[[Array], Array], n_latents: int, n_classes: int, dtype: jnp.dtype = jnp.float32
) -> tuple[Array, Array]:
    """(f_Z, df_ZxLxC): f and its gradient at every one-hot code, in the order of `all_codes`.

    `f(z_LxC) -> scalar`; vmapped over all C^L codes (one batched pass of the decoder).
    """
    z_ZxLxC = one_hot_codes(n_latents, n_classes, dtype)
    return jax.vmap(jax.value_and_grad(f))(z_ZxLxC)


@jax.custom_vjp
def _lookup(z_LxC: Array, f_Z: Array, df_ZxLxC: Array) -> Array:
    return f_Z[code_index(z_LxC)]


def _lookup_fwd(z_LxC, f_Z, df_ZxLxC):
    i = code_index(z_LxC)
    return f_Z[i], (i, df_ZxLxC, z_LxC)


def _lookup_bwd(res, v):
    i, df_ZxLxC, z_LxC = res
    # The tables are data, not parameters: no cotangent for them.
    return (v * df_ZxLxC[i]).astype(z_LxC.dtype), None, None


_lookup.defvjp(_lookup_fwd, _lookup_bwd)


def tabulated(f_Z: Array, df_ZxLxC: Array) -> Callable[[Array], Array]:
    """A function of a one-hot code z (L, C) with value f_Z[index(z)] and gradient
    df_ZxLxC[index(z)]: f itself at every code, given `tabulate(f, L, C)`.

    Meaningless for a z that is not one-hot (a relaxation's output).
    """
    return lambda z_LxC: _lookup(z_LxC, f_Z, df_ZxLxC)
