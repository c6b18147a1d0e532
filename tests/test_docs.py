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


def test_relative_links_and_images_in_the_docs_exist():
    """Every relative link or image in README.md and docs/*.md names a file of the repository
    (figures are renamed when the code that draws them changes)."""
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.exists():
                missing.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not missing, missing
