"""Tests for ``gradlab.plot`` (matplotlib imported lazily, object API only)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib
import matplotlib.figure

from gradlab import plot
from gradlab import schedules as S


def test_importing_gradlab_does_not_import_matplotlib():
    code = (
        "import sys, gradlab, gradlab.schedules, gradlab.plot\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_schedules_plot_draws_each_schedule_at_every_step():
    lrs = {"cosine": S.cosine_decay(1.0, 50, 0.1), "step": S.step_decay(0.5, 10, 0.5)}
    fig = plot.schedules(lrs, num_steps=60)
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"cosine", "step"}
    steps = np.arange(60)
    np.testing.assert_array_equal(lines["step"].get_xdata(), steps)
    # The drawn values are the formulas, not just "some line".
    np.testing.assert_allclose(lines["step"].get_ydata(), 0.5 * 0.5 ** (steps // 10), rtol=1e-6)
    cosine = 0.1 + 0.9 * (1 + np.cos(np.pi * np.minimum(steps, 50) / 50)) / 2
    np.testing.assert_allclose(lines["cosine"].get_ydata(), cosine, rtol=1e-5)
    assert ax.get_legend() is not None
    assert ax.get_yscale() == "linear"


def test_schedules_plot_log_scale_and_given_axes():
    fig = matplotlib.figure.Figure()
    left, right = fig.subplots(1, 2)
    out = plot.schedules({"exp": S.exponential_decay(1.0, 0.9)}, 30, log_scale=True, ax=right)
    assert out is fig
    assert right.get_yscale() == "log" and len(right.lines) == 1
    assert len(left.lines) == 0


def test_schedules_plot_accepts_a_single_schedule():
    fig = plot.schedules(S.linear(0.0, 1.0, 10), 20)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata()[[0, 5, 10, 19]], [0, 0.5, 1, 1])


def test_schedules_plot_renders_under_agg(tmp_path):
    fig = plot.schedules({"one_cycle": S.one_cycle(100, 1.0)}, 100)
    fig.savefig(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, error",
    [
        (({}, 10), ValueError),
        (({"a": S.constant(1.0)}, 0), ValueError),
        (({"a": S.constant(1.0)}, 2.5), ValueError),
        (({"a": 0.1}, 10), TypeError),
        (([S.constant(1.0)], 10), TypeError),
    ],
    ids=["empty", "zero-steps", "fractional-steps", "not-callable", "not-a-dict"],
)
def test_schedules_plot_rejects_bad_arguments(args, error):
    with pytest.raises(error):
        plot.schedules(*args)


def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"pip install gradlab\[plot\]"):
        plot.schedules({"a": S.constant(1.0)}, 10)
