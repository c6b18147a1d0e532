"""The whole logic gate network (the `dlgn` task's model): its wiring tables for every layer,
and the float forward from per-layer gate coefficients to class logits, so the model is written
once, beside its layers.

The tables travel in a dict (the task's fixed arrays): `wiring_in` (2N,) and `wiring_inv_in`
(D, F) for the first layer (a-inputs, then b-inputs; the inverse table serves the gather's
backward), `wiring_hidden` (L-1, 2N) and `wiring_inv_hidden` (L-1, N, F) for the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dst_jax.logic.layers import group_sum_neuron_major, logic_layer, neuron_major
from dst_jax.logic.layers import packed_input_layer as _packed_input_layer
from dst_jax.logic.packed import pack_bits
from dst_jax.logic.wiring import Scheme, make_wiring, wiring_tables


def network_tables(
    in_dim: int, layers: int, width: int, scheme: Scheme, seed: int
) -> dict[str, np.ndarray]:
    """Every layer's wiring tables (module docstring), layer l drawn from the seed
    (seed, l). The inverse tables of the hidden layers are padded to a common fan-out F with the
    out-of-range index 2N (read as zero)."""
    tables = []
    for layer in range(layers):
        idx_2xN = make_wiring(
            np.random.SeedSequence([seed, layer]).generate_state(1)[0], in_dim, width, scheme
        )
        tables.append(wiring_tables(idx_2xN, in_dim))
        in_dim = width
    out = {}
    out["wiring_in"], out["wiring_inv_in"] = tables[0]
    k = 2 * width
    fan_out = max([inv.shape[1] for _, inv in tables[1:]], default=1)
    # With one layer these are empty (0, ...) arrays.
    out["wiring_hidden"] = np.zeros((layers - 1, k), np.int32)
    out["wiring_inv_hidden"] = np.full((layers - 1, width, fan_out), k, np.int32)
    for layer, (idx, inv) in enumerate(tables[1:]):
        out["wiring_hidden"][layer] = idx
        out["wiring_inv_hidden"][layer, :, : inv.shape[1]] = inv
    return out


def network_forward(
    coefs: Sequence[jax.Array],
    x_BxD: jax.Array,
    tables: Mapping[str, jax.Array],
    n_classes: int,
    group_sum_tau: float,
    hidden_in_scan: bool = False,
) -> jax.Array:
    """Class logits (B, n_classes) from per-layer coefficients (N, 4) or (N, B, 4).

    `x_BxD`: {0, 1} inputs, integer or bool (read bit-packed by the first layer,
    `packed_input_layer`, nonzero as 1), or floats in [0, 1]. Activations are neuron-major
    (N, B) inside (see `logic_layer`), and so is the GroupSum (`group_sum_neuron_major`).

    Hidden layers: unrolled (training) or, with `hidden_in_scan=True`, in a `lax.scan`
    (evaluation): in a forward-only program XLA (CPU) fuses each layer into the next one's
    gathers and recomputes it, which the scan's materialised steps prevent; in training the
    backward materialises every layer anyway and a scan would stack its residuals, so unrolled
    is faster there (docs/PERFORMANCE.md, "Logic-gate kernels").
    """
    if len(coefs) != tables["wiring_hidden"].shape[0] + 1:
        raise ValueError(
            f"{len(coefs)} layers of coefficients for a wiring of "
            f"{tables['wiring_hidden'].shape[0] + 1} layers; build data and params from the "
            f"same Config"
        )
    if jnp.issubdtype(x_BxD.dtype, jnp.integer) or x_BxD.dtype == jnp.bool_:
        # Binary data (the task's uint8 bits) enter packed, 32 examples per word.
        h_NxB = _packed_input_layer(pack_bits(x_BxD), coefs[0], tables["wiring_in"], x_BxD.shape[0])
    else:
        h_NxB = logic_layer(
            neuron_major(x_BxD), coefs[0], tables["wiring_in"], tables["wiring_inv_in"]
        )
    hidden = (tables["wiring_hidden"], tables["wiring_inv_hidden"])
    if hidden_in_scan and len(coefs) > 1:
        h_NxB, _ = jax.lax.scan(
            lambda h, layer: (logic_layer(h, *layer), None),
            h_NxB,
            (jnp.stack(coefs[1:]), *hidden),
        )
    else:
        for layer in range(1, len(coefs)):
            h_NxB = logic_layer(h_NxB, coefs[layer], hidden[0][layer - 1], hidden[1][layer - 1])
    return group_sum_neuron_major(h_NxB, n_classes, group_sum_tau)
