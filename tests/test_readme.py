"""README.md's Python examples run as written, top to bottom, in one namespace.

The blocks build on each other (the quick start defines ``params``, ``loss_fn``,
``x``, ``y``; later blocks use them), as a reader pasting them in order would.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(python_blocks()) >= 4


def test_readme_python_examples_run_in_order():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(python_blocks()):
            try:
                exec(compile(block, f"README.md python block {i}", "exec"), namespace)
            except Exception as e:  # name the block in the failure
                raise AssertionError(f"README python block {i} failed:\n{block}") from e
    printed = out.getvalue()
    # The quick start trains: from 5.3 at zero params to well below.
    assert float(re.search(r"loss after 300 steps: (\S+)", printed).group(1)) < 0.5, printed
    # The sweep printed four finite final losses, one per learning rate.
    sweep = re.search(r"\[([^\]]+)\]", printed).group(1).split()
    assert len(sweep) == 4 and np.all(np.isfinite(np.asarray(sweep, float))), printed
    # The flat-params step ran and gives back the tree.
    assert set(namespace["params"]) == {"w", "b"}
