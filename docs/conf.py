"""Sphinx configuration of the documentation: `sphinx-build -W -c docs . docs/_build/html`.

The source folder is the repository root, so that the README, the essays of docs/ (DESIGN.md,
RESULTS.md, PERFORMANCE.md, RELIABILITY.md) and the reports they link to are pages as they are,
read by myst-parser, with their links between each other intact. The API pages in docs/api/ are
built by autodoc from the docstrings, which napoleon reads in their Google style.
"""

import re

from sphinx.util import inspect as sphinx_inspect

from dst_jax import __version__

project = "dst_jax"
author = "the dst_jax authors"
copyright = "the dst_jax authors; Apache-2.0"
release = version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "docs/index"
# Only these files are pages; everything else in the repository is left alone.
include_patterns = ["README.md", "docs/**", "results/gradients-cae/summary.md"]
exclude_patterns = ["docs/_build"]
html_theme = "alabaster"

# The docstrings write code as Markdown does, in single backticks: render it as code, not as
# reST's default (italic "interpreted text").
default_role = "literal"

# Keep jax's array alias by name instead of expanding the Union behind it on every parameter
# (the modules use `from __future__ import annotations`, so autodoc sees the name).
autodoc_type_aliases = {
    "ArrayLike": "jax.typing.ArrayLike",
    "Uniform": "dst_jax.estimators.Uniform",
}
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes as fields of their class, not as separate entries that would repeat a dataclass
# field autodoc already lists.
napoleon_use_ivar = True

# Headings of the essays get anchors, so "RESULTS.md#section" links resolve.
myst_heading_anchors = 3


def _is_item(line: str) -> bool:
    return line.lstrip().startswith(("- ", "* "))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _blank_lines_around_lists(app, what, name, obj, options, lines: list[str]) -> None:
    """The docstrings write lists as Markdown does, right under the line that introduces them
    and followed at once by the next paragraph; reST needs a blank line on both sides.

    Inserts one where a list item follows a text line of the same indentation, and where text
    follows a list item (or its continuation lines) at a smaller indentation.
    """
    out: list[str] = []
    in_list = False
    for line in lines:
        if out and out[-1].strip() and line.strip():
            prev = out[-1]
            starts = _is_item(line) and not in_list and _indent(line) == _indent(prev)
            ends = in_list and not _is_item(line) and _indent(line) < _indent(prev)
            if starts or ends:
                out.append("")
        if not line.strip():
            in_list = False
        elif _is_item(line):
            in_list = True
        elif in_list and _indent(line) == 0:
            in_list = False
        out.append(line)
    lines[:] = out


def _readable_signature(app, what, name, obj, options, signature, return_annotation):
    """Signatures as a reader calls them.

    A `flax.nnx` module is built by a metaclass whose `__call__` takes `(*args, **kwargs)`: show
    the parameters of its `__init__` instead. A default that is a built-in function (`print`)
    is shown by name, not by its repr, which reST cannot parse as a signature.
    """
    if what == "class" and signature == "(*args: Any, **kwargs: Any)":
        sig = sphinx_inspect.signature(
            obj.__init__, bound_method=True, type_aliases=app.config.autodoc_type_aliases
        )
        signature = sphinx_inspect.stringify_signature(sig, show_return_annotation=False)
    if signature:
        signature = re.sub(r"<built-in function (\w+)>", r"\1", signature)
        # An alias nested in a generic (Callable[[ArrayLike], ...]) is printed as its wrapper.
        signature = re.sub(r"TypeAliasForwardRef\('([\w.]+)'\)", r"\1", signature)
    return signature, return_annotation


def setup(app):
    app.connect("autodoc-process-docstring", _blank_lines_around_lists)
    app.connect("autodoc-process-signature", _readable_signature)
