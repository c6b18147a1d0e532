"""The 16 logic gates as Python Boolean functions, written from their names: the reference the
logic tests check dst_jax's gate tables, relaxations and bit-packed masks against (independent of
every table in dst_jax.logic)."""

BOOLEAN = {
    "FALSE": lambda a, b: False,
    "AND": lambda a, b: a and b,
    "A AND NOT B": lambda a, b: a and not b,
    "A": lambda a, b: a,
    "NOT A AND B": lambda a, b: (not a) and b,
    "B": lambda a, b: b,
    "XOR": lambda a, b: a != b,
    "OR": lambda a, b: a or b,
    "NOR": lambda a, b: not (a or b),
    "XNOR": lambda a, b: a == b,
    "NOT B": lambda a, b: not b,
    "B IMPLIES A": lambda a, b: (not b) or a,
    "NOT A": lambda a, b: not a,
    "A IMPLIES B": lambda a, b: (not a) or b,
    "NAND": lambda a, b: not (a and b),
    "TRUE": lambda a, b: True,
}
