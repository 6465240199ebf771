"""Plots (matplotlib, the optional ``gradlab[plot]`` extra).

matplotlib is imported inside each function, never at module import, so
``import gradlab`` stays light and works without it. Figures are built with
the object API (``matplotlib.figure.Figure``): no pyplot global state, no
``show()``, safe under the Agg backend and in notebooks (a returned figure
is displayed once). One module per plot.
"""

from gradlab.plot._lr_finder import lr_finder
from gradlab.plot._schedules import schedules
from gradlab.plot._sweep import sweep
from gradlab.plot._trajectories import trajectories

__all__ = ["lr_finder", "schedules", "sweep", "trajectories"]
