"""Tools that run whole trainings or solves: ``minimize``, ``sweep``, ``lr_finder``.

One module per tool; each is re-exported at the top level (``gl.minimize``, ...).
"""

from gradlab.run._lr_finder import LRFinderResult, lr_finder
from gradlab.run._minimize import MinimizeResult, minimize
from gradlab.run._sweep import SweepBest, SweepResult, sweep

__all__ = [
    "LRFinderResult",
    "MinimizeResult",
    "SweepBest",
    "SweepResult",
    "lr_finder",
    "minimize",
    "sweep",
]
