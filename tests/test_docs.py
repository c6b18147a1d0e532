"""The docs point at things that exist: every test docs/RELIABILITY.md names is defined."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_reliability_table_names_existing_tests():
    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    refs = re.findall(r"`(tests/test_\w+\.py)(?:::(\w+))?`((?:, `::\w+`)*)", text)
    assert refs
    for path, first, more in refs:
        source = (ROOT / path).read_text()
        names = [first, *re.findall(r"::(\w+)", more)]
        for name in filter(None, names):
            assert f"def {name}(" in source, f"{path}::{name} is named in RELIABILITY.md"
