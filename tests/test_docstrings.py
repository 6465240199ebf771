"""Every ``>>>`` example in gradlab's docstrings runs as written.

A user copies them into a session: each is self-contained (it builds its own
params, data and optimizer) and its printed values are the real ones. The
losses' and schedules' examples run in their own test files; this covers the
rest of the package. Examples run with ``gl``, ``jax``, ``jnp`` and ``np``
imported, as the README's examples assume.
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil

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
