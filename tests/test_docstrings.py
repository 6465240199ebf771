"""Every ``>>>`` example in gradlab's docstrings runs as written, and every
public function's docstring names each of its arguments.

A user copies the examples into a session: each is self-contained (it builds
its own params, data and optimizer) and its printed values are the real ones.
The losses' and schedules' examples run in their own test files; this covers
the rest of the package. Examples run with ``gl``, ``jax``, ``jnp`` and ``np``
imported, as the README's examples assume.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import pkgutil
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlab as gl

COVERED_ELSEWHERE = ("gradlab.losses", "gradlab.schedules")  # test_losses, test_schedules
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(gl.__path__, "gradlab.")
    if not m.name.startswith(COVERED_ELSEWHERE)
)
HAVE_EXAMPLES = [
    name
    for name in MODULES
    if any(
        ">>>" in (t.docstring or "")
        for t in doctest.DocTestFinder().find(importlib.import_module(name))
    )
]


ENTRY_POINTS = ("gradlab._checkpoint", "gradlab.combinators._hyperparams", "gradlab.run._sweep",
                "gradlab.optimizers._lbfgs", "gradlab.plot._sweep")  # fmt: skip


def test_the_examples_are_found():
    for name in ENTRY_POINTS:  # modules of public entry points, with examples
        assert name in HAVE_EXAMPLES, name


@pytest.mark.parametrize("name", HAVE_EXAMPLES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    result = doctest.testmod(
        module,
        extraglobs={"gl": gl, "jax": jax, "jnp": jnp, "np": np, "os": os},
        optionflags=doctest.NORMALIZE_WHITESPACE,
        report=True,
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def _unnamed_arguments(module) -> dict[str, list[str]]:
    """The public functions of ``module`` whose docstring never names one of their
    parameters (``help(gl.muon)`` must describe each), with those parameters.
    A name counts only as a whole word: ``lr`` does not name ``learning_rate``."""
    unnamed = {}
    for name in module.__all__:
        f = getattr(module, name)
        if not callable(f) or inspect.isclass(f):
            continue
        doc = inspect.getdoc(f) or ""
        missing = [
            p
            for p in inspect.signature(f).parameters
            if p not in ("args", "kwargs") and not re.search(rf"(?<!\w){p}(?!\w)", doc)
        ]
        if missing:
            unnamed[name] = missing
    return unnamed


@pytest.mark.parametrize("name", ["gradlab", "gradlab.schedules", "gradlab.losses", "gradlab.plot"])
def test_every_argument_is_named_in_the_docstring(name):
    unnamed = _unnamed_arguments(importlib.import_module(name))
    assert not unnamed, f"{name}: docstrings that never name these arguments: {unnamed}"
