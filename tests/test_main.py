"""The showcase (`python -m gradlab`) runs and every optimizer makes progress."""

from __future__ import annotations

import re
import subprocess
import sys

import gradlab.__main__ as showcase


def test_showcase_trains_every_optimizer(capsys):
    showcase.main(["--steps", "60"])
    out = capsys.readouterr().out
    initial = float(re.search(r"initial loss ([0-9.]+)", out).group(1))
    rows = re.findall(r"^(.+?)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9,]+)$", out, re.M)
    names = {name.strip() for name, *_ in rows}
    assert names == set(showcase.OPTIMIZERS), names
    for name, _final, best, _rate in rows:
        assert float(best) < initial, f"{name} made no progress: {best} >= {initial}"
    assert "4 learning rates" in out


def test_importing_gradlab_imports_no_plotting_or_peer_library():
    code = (
        "import sys, gradlab; "
        "bad = [m for m in ('matplotlib', 'optax', 'torch', 'scipy') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
