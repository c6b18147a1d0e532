"""`dst_jax.logic` is a package split by job; every public name of the former single module is
still importable from `dst_jax.logic`, and is the object its job's module defines."""

from __future__ import annotations

import importlib
import pathlib

import dst_jax
from dst_jax import logic

# The public names of the former `dst_jax/logic.py`, by the module that now holds each.
NAMES = {
    "gates": (
        "GATE_COEF_16x4 GATE_NAMES N_GATES apply_coefficients argmax_coefficients "
        "gate_coefficients relax"
    ),
    "wiring": "Scheme WIRING_SCHEMES inverse_wiring make_wiring wire_gather wiring_tables",
    "layers": ("group_sum group_sum_neuron_major logic_layer neuron_major packed_input_layer"),
    "packed": (
        "WORD_BITS apply_gate_masks gate_masks gate_xor_masks n_words network_wirings "
        "pack_bits packed_forward packed_group_counts packed_layer packed_predict "
        "predict_from_logits unpack_bits"
    ),
    "network": "network_forward network_tables",
}


def test_every_public_name_is_reexported_from_its_module():
    for module, names in NAMES.items():
        mod = importlib.import_module(f"dst_jax.logic.{module}")
        for name in names.split():
            assert getattr(logic, name) is getattr(mod, name), (module, name)
    assert set(logic.__all__) == {n for names in NAMES.values() for n in names.split()}


def test_modules_are_short_and_say_why():
    folder = pathlib.Path(dst_jax.__file__).parent / "logic"
    for path in folder.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 450, path.name
        doc = importlib.import_module(f"dst_jax.logic.{path.stem}".replace(".__init__", ""))
        assert doc.__doc__ and len(doc.__doc__.split()) > 10, path.name
