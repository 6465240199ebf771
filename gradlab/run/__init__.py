"""Tools that run whole trainings or solves: ``minimize``, ``sweep``, ``lr_finder``.

One module per tool; each is re-exported at the top level (``gl.minimize``, ...).
"""

from gradlab.run._minimize import MinimizeResult, minimize

__all__ = ["MinimizeResult", "minimize"]
