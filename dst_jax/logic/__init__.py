"""Differentiable logic gate networks (difflogic, Petersen et al. 2022), written for speed in JAX.

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

Modules, one job each: `gates` (the 16 gates as coefficients), `wiring` (the fixed random wiring
and its inverse tables), `layers` (the float layer, the bit-packed first layer, GroupSum),
`network` (the whole network: its tables and its forward), `packed` (exact bit-packed
evaluation of the discretised network). Every public name is importable from here.
"""

from dst_jax.logic.gates import (
    GATE_NAMES,
    N_GATES,
    GATE_COEF_16x4,
    apply_coefficients,
    argmax_coefficients,
    gate_coefficients,
    relax,
)
from dst_jax.logic.layers import (
    group_sum,
    group_sum_neuron_major,
    logic_layer,
    neuron_major,
    packed_input_layer,
)
from dst_jax.logic.network import network_forward, network_tables
from dst_jax.logic.packed import (
    WORD_BITS,
    apply_gate_masks,
    gate_masks,
    gate_xor_masks,
    n_words,
    network_wirings,
    pack_bits,
    packed_forward,
    packed_group_counts,
    packed_layer,
    packed_predict,
    predict_from_logits,
    unpack_bits,
)
from dst_jax.logic.wiring import (
    WIRING_SCHEMES,
    Scheme,
    inverse_wiring,
    make_wiring,
    wire_gather,
    wiring_tables,
)

__all__ = [
    "GATE_COEF_16x4",
    "GATE_NAMES",
    "N_GATES",
    "WIRING_SCHEMES",
    "WORD_BITS",
    "Scheme",
    "apply_coefficients",
    "apply_gate_masks",
    "argmax_coefficients",
    "gate_coefficients",
    "gate_masks",
    "gate_xor_masks",
    "group_sum",
    "group_sum_neuron_major",
    "inverse_wiring",
    "logic_layer",
    "make_wiring",
    "n_words",
    "network_forward",
    "network_tables",
    "network_wirings",
    "neuron_major",
    "pack_bits",
    "packed_forward",
    "packed_group_counts",
    "packed_input_layer",
    "packed_layer",
    "packed_predict",
    "predict_from_logits",
    "relax",
    "unpack_bits",
    "wire_gather",
    "wiring_tables",
]
