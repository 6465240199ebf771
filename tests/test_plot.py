"""Tests for ``gradlab.plot`` (matplotlib imported lazily, object API only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib
import matplotlib.figure

import gradlab as gl
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


def _bowl(x):
    return jnp.sum(x**2)


@pytest.fixture(scope="module")
def results():
    """A two-configuration sweep and a range test, the smallest there are."""
    params, batches = {"w": jnp.ones(2)}, jnp.ones((6, 2))

    def loss(p, b):
        return jnp.sum((p["w"] - 0.5 * b) ** 2)

    sweep = gl.sweep(gl.sgd, loss, params, batches, {"learning_rate": [0.01, 0.1]},
                     num_steps=6, progress=False)  # fmt: skip
    negative = gl.sweep(gl.sgd, lambda p, b: loss(p, b) - 10.0, params, batches,
                        {"learning_rate": [0.01, 0.1]}, num_steps=2, progress=False)  # fmt: skip
    return {
        "sweep": sweep,
        "negative": negative,
        "lr_finder": gl.lr_finder(gl.sgd, loss, params, batches, num_steps=6),
    }


def _trajectories(**kwargs):
    return lambda _: plot.trajectories(_bowl, {"sgd": gl.sgd(0.1)}, np.ones(2), 3, **kwargs)


CONSTANT = {"c": S.constant(0.1)}
NAN = float("nan")

# (call on the results fixture, the argument the message must name)
BAD_ARGUMENTS = {
    "trajectories levels=-1": (_trajectories(levels=-1), "levels"),
    "trajectories levels='x'": (_trajectories(levels="x"), "levels"),
    "trajectories levels=True": (_trajectories(levels=True), "levels"),
    "trajectories levels decreasing": (_trajectories(levels=[3.0, 2.0]), "levels"),
    "trajectories decades=0": (_trajectories(decades=0.0), "decades"),
    "trajectories decades=-1": (_trajectories(decades=-1.0), "decades"),
    "trajectories decades='4'": (_trajectories(decades="4"), "decades"),
    "trajectories decades=nan": (_trajectories(decades=NAN), "decades"),
    "trajectories bounds one pair": (_trajectories(bounds=((0, 1),)), "bounds"),
    "trajectories bounds='x'": (_trajectories(bounds="x"), "bounds"),
    "trajectories bounds nan": (_trajectories(bounds=((NAN, 1), (0, 1))), "bounds"),
    "trajectories bounds reversed": (_trajectories(bounds=((1, -1), (0, 1))), "bounds"),
    "trajectories bounds ragged": (_trajectories(bounds=((0, 1), (0,))), "bounds"),
    "trajectories figsize=(-1, 5)": (_trajectories(figsize=(-1, 5)), "figsize"),
    "trajectories figsize=5": (_trajectories(figsize=5), "figsize"),
    "trajectories interval=-1": (_trajectories(animate=True, interval=-1), "interval"),
    "trajectories animate='no'": (_trajectories(animate="no"), "animate"),
    "trajectories ax='x'": (_trajectories(ax="x"), "ax"),
    "trajectories x0 nan": (
        lambda _: plot.trajectories(_bowl, {"sgd": gl.sgd(0.1)}, [NAN, 1.0], 3),
        "x0",
    ),
    "trajectories fun=3": (
        lambda _: plot.trajectories(3, {"sgd": gl.sgd(0.1)}, np.ones(2), 3),
        "fun",
    ),
    "trajectories num_steps array": (
        lambda _: plot.trajectories(_bowl, {"sgd": gl.sgd(0.1)}, np.ones(2), np.array([3, 4])),
        "num_steps",
    ),
    "sweep by=1": (lambda r: plot.sweep(r["sweep"], by=1), "by"),
    "sweep by=[1]": (lambda r: plot.sweep(r["sweep"], by=[1]), "by"),
    "sweep log_scale='no'": (lambda r: plot.sweep(r["sweep"], log_scale="no"), "log_scale"),
    "sweep metric=1": (lambda r: plot.sweep(r["sweep"], metric=1), "metric"),
    "sweep smoothing array": (lambda r: plot.sweep(r["sweep"], smoothing=[0.1, 0.2]), "smoothing"),
    "schedules log_scale='no'": (
        lambda _: plot.schedules(CONSTANT, 10, log_scale="no"),
        "log_scale",
    ),
    "schedules ax='x'": (lambda _: plot.schedules(CONSTANT, 10, ax="x"), "ax"),
    "schedules num_steps array": (lambda _: plot.schedules(CONSTANT, [3, 4]), "num_steps"),
    "schedules num_steps=True": (lambda _: plot.schedules(CONSTANT, True), "num_steps"),
    "schedules returning strings": (
        lambda _: plot.schedules({"c": lambda s: "x"}, 10),
        "schedules['c']",
    ),
    "lr_finder show_raw='no'": (
        lambda r: plot.lr_finder(r["lr_finder"], show_raw="no"),
        "show_raw",
    ),
    "lr_finder ax=1": (lambda r: plot.lr_finder(r["lr_finder"], ax=1), "ax"),
    "sweep log_scale=True, negative losses": (
        lambda r: plot.sweep(r["negative"], log_scale=True),
        "log_scale",
    ),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_arguments_raise_naming_the_argument(case, results):
    call, name = case
    with pytest.raises((ValueError, TypeError)) as info:
        call(results)  # figures are pyplot-free: nothing to close
    assert name in str(info.value), str(info.value)
    # raised by gradlab's checks, not deep in NumPy or matplotlib
    assert "gradlab" in Path(info.traceback[-1].path).parts, info.traceback[-1]


def test_what_is_accepted_is_drawn(results):
    # a schedule returning one number (Optax's constant_schedule) holds it;
    # one of Python control flow on its step is called at each step
    fig = plot.schedules({"one": lambda step: 0.1, "two": lambda s: 0.1 if s < 3 else 0.2}, 5)
    one, two = fig.axes[0].lines
    np.testing.assert_allclose(one.get_ydata(), [0.1] * 5)
    np.testing.assert_allclose(two.get_ydata(), [0.1, 0.1, 0.1, 0.2, 0.2])
    # by= one name; levels many decades above a minimum far from 0 (levels the
    # float spacing cannot tell apart merge instead of failing as not increasing)
    assert len(plot.sweep(results["sweep"], by="learning_rate").axes) == 2
    # a smoothing of 1 - 1e-8: computed in NumPy float64, not refused as float32's 1
    assert plot.sweep(results["sweep"], smoothing=1 - 1e-8).axes
    fig = plot.trajectories(lambda x: _bowl(x) + 5.0, {"sgd": gl.sgd(0.1)}, np.ones(2), 3,
                            decades=30.0, resolution=10)  # fmt: skip
    assert len(fig.axes[0].lines) == 3


def test_schedules_plot_takes_log_scale_none_and_several_curves_per_schedule():
    """log_scale=None is a linear axis (as before the argument checks), and a
    schedule returning (steps, k) values draws k curves."""
    import matplotlib

    matplotlib.use("Agg")
    fig = gl.plot.schedules({"a": gl.schedules.constant(0.1)}, 10, log_scale=None)
    assert fig.axes[0].get_yscale() == "linear"
    fig = gl.plot.schedules({"two": lambda s: jnp.stack([0.1 + 0 * s, 0.2 + 0 * s], -1)}, 10)
    assert len(fig.axes[0].lines) == 2


def test_sweep_values_of_any_number_type_and_schedules_are_told_apart():
    """jnp/NumPy numbers are numbers (a log axis, 0.001 in the legend, not
    'Array(0.001, dtype=float32)' as categories); schedules are named by their
    factory, numbered when two read the same (every row read 'schedule'); a
    one-step sweep draws a marker (a line of one point drew nothing)."""

    def loss(p, b):
        return jnp.sum((p - b) ** 2)

    kw = {"num_steps": 1, "progress": False}
    numbers = gl.sweep(gl.sgd, loss, jnp.zeros(2), jnp.ones((1, 2)),
                       {"learning_rate": jnp.array([1e-3, 1e-2, 1e-1])}, **kw)  # fmt: skip
    fig = plot.sweep(numbers)
    assert fig.axes[1].get_xscale() == "log"
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["learning_rate=0.001", "learning_rate=0.01", "learning_rate=0.1"]
    assert all(line.get_marker() == "o" for line in fig.axes[0].lines)

    schedules = [S.cosine_decay(0.1, 10), S.cosine_decay(0.2, 10), S.constant(0.1)]
    named = gl.sweep(gl.sgd, loss, jnp.zeros(2), jnp.ones((1, 2)),
                     {"learning_rate": schedules}, **kw)  # fmt: skip
    rows = str(named).splitlines()[2:]
    assert sorted(row.split()[1] for row in rows) == [
        "constant", "cosine_decay#1", "cosine_decay#2"
    ]  # fmt: skip
    ticks = [t.get_text() for t in plot.sweep(named).axes[1].get_xticklabels()]
    assert ticks == ["cosine_decay#1", "cosine_decay#2", "constant"]


def test_lr_finder_plot_of_a_curve_that_never_falls_shows_it_whole():
    # (cut at its start + 1e-12: one point of 17 inside the window)
    with pytest.warns(UserWarning, match="never fell"):
        rising = gl.lr_finder(gl.sgd, lambda p, b: jnp.sum((p - b) ** 2), jnp.zeros(2),
                              jnp.ones((1, 2)), min_lr=2.5, max_lr=3.0, num_steps=8)  # fmt: skip
    fig = plot.lr_finder(rising)
    shown = np.asarray(rising.smoothed)[: int(rising.stop_step)]
    lo, hi = fig.axes[0].get_ylim()
    assert lo <= shown.min() and shown.max() <= hi, (lo, hi, shown)
    assert "no suggestion" in fig.axes[0].get_title()


def test_lr_finder_plot_zooms_on_a_small_descent_before_the_blow_up():
    # A 2.30 -> 2.25 descent, then the explosion: drawn flat when the zoom
    # asked for a descent of 1% of the whole curve's spread (review7).
    lrs = np.geomspace(1e-4, 1.0, 40)
    smooth = np.concatenate([np.linspace(2.30, 2.25, 30), np.linspace(2.3, 9.0, 10)])
    suggestion = jnp.asarray(lrs[10], jnp.float32)
    result = gl.LRFinderResult(jnp.asarray(lrs), jnp.asarray(smooth), jnp.asarray(smooth),
                               jnp.asarray(40), {"steepest": suggestion}, suggestion)  # fmt: skip
    lo, hi = plot.lr_finder(result).axes[0].get_ylim()
    assert hi < 2.4 and lo < 2.25, (lo, hi)


def test_a_single_point_is_drawn_with_a_marker():
    """One step of a schedule, or a range test that stopped at step 1, is one
    point: a line without a marker painted nothing (hunt84)."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def painted(fig):
        FigureCanvasAgg(fig)
        fig.canvas.draw()
        before = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        for line in fig.axes[0].lines:
            line.set_visible(False)
        fig.canvas.draw()
        return int(np.any(before != np.asarray(fig.canvas.buffer_rgba())[..., :3], -1).sum())

    fig = plot.schedules({"lr": S.constant(0.5)}, 1)
    assert [line.get_marker() for line in fig.axes[0].lines] == ["o"]
    assert painted(fig) > 0
    # and the user's style still applies to longer schedules (review22: "-" forced)
    import matplotlib.pyplot as plt
    from cycler import cycler

    with plt.rc_context({"axes.prop_cycle": cycler(linestyle=["-", "--"]), "lines.marker": "x"}):
        fig = plot.schedules({"a": S.constant(0.5), "b": S.constant(0.25)}, 3)
    lines = fig.axes[0].lines
    styles = [(line.get_linestyle(), line.get_marker()) for line in lines]
    assert styles == [("-", "x"), ("--", "x")]

    def loss(p, step):  # 1 at step 0, NaN after: the test stops at step 1
        return jnp.sum(p * 0) + jnp.where(step == 0, 1.0, jnp.nan)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = gl.lr_finder(gl.sgd, loss, jnp.zeros(2), lambda s: s, num_steps=10)
    assert int(result.stop_step) == 1
    assert painted(plot.lr_finder(result)) > 0
