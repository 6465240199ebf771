"""What type checkers see of the public API (hunt43), checked at run time.

The suite runs no type checker, so these tests read the annotations the way a
checker would (``typing.get_type_hints``, the source's ``TYPE_CHECKING`` block)
and hold them against what the code does.
"""

from __future__ import annotations

import ast
import pathlib
import tomllib

import gradlab as gl

ROOT = pathlib.Path(gl.__file__).resolve().parent.parent


def test_py_typed_marker_is_shipped():
    """PEP 561: without ``gradlab/py.typed`` mypy skips gradlab ("missing library
    stubs or py.typed marker") and every gradlab name is ``Any``. It is named as
    package data, since setuptools >= 68 (the build floor) ships it by default
    only from 69.0."""
    assert (pathlib.Path(gl.__file__).parent / "py.typed").is_file()
    with open(ROOT / "pyproject.toml", "rb") as f:
        config = tomllib.load(f)
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["gradlab"]


def test_lazy_submodules_are_imported_for_type_checkers():
    """``gl.schedules``/``gl.losses``/``gl.plot`` load through ``__getattr__`` (-> Any);
    an ``if TYPE_CHECKING:`` import of each gives checkers the module's types.
    (That importing gradlab still leaves matplotlib alone: test_plot.py.)"""
    tree = ast.parse((pathlib.Path(gl.__file__)).read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in ast.walk(node):
                if isinstance(stmt, ast.ImportFrom) and stmt.module == "gradlab":
                    imported |= {a.asname or a.name for a in stmt.names}
    assert imported == set(gl._LAZY_SUBMODULES)
