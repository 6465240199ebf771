"""README.md's Python examples run as written -- each one on its own.

A new user pastes one example, not the page: every ``python`` block must run
in a fresh namespace (its own imports, its own data), so none silently leans
on names an earlier block defined. Blocks are parametrized by index so a
failure names the block.
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


BLOCKS = python_blocks()


def run_block(i: int) -> tuple[str, dict]:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(BLOCKS[i], f"README.md python block {i}", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            raise AssertionError(f"README python block {i} failed on its own:\n{BLOCKS[i]}") from e
    return out.getvalue(), namespace


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_example_runs_on_its_own(i):
    printed, namespace = run_block(i)
    block = BLOCKS[i]
    if "loss after 300 steps" in block:  # the quick start trains: from 5.3 to well below
        loss = float(re.search(r"loss after 300 steps: (\S+)", printed).group(1))
        assert loss < 0.5, printed
    if "jax.vmap(final_loss)" in block:  # the sweep: four finite final losses
        sweep = re.search(r"\[([^\]]+)\]", printed).group(1).split()
        assert len(sweep) == 4 and np.all(np.isfinite(np.asarray(sweep, float))), printed
    if "ravel_pytree" in block:  # the flat-params step ran and gives back the tree
        assert set(namespace["params"]) == {"w", "b"}
