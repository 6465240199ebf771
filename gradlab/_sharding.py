"""Optimizer state and sharding: each state leaf follows its param's sharding.

``init`` creates every params-shaped state leaf from its param (see
``_tree.full_like``), so XLA gives it the param's sharding eagerly and under
``jax.jit(tx.init)``; scalar counters are replicated. :func:`state_shardings`
reads those shardings off the compiled ``init`` without running it, for
``out_shardings=`` and for checkpoint restore.
"""

from __future__ import annotations

from typing import Any

import jax

from gradlab._checks import check_transformation


def state_shardings(tx: Any, params: Any) -> Any:
    """The sharding of every leaf of ``tx.init(params)``, without computing it.

    ``params`` may be arrays or ``jax.ShapeDtypeStruct``s carrying a
    ``sharding``: nothing is materialised, so a model too large for one
    device can get its optimizer state created directly sharded::

        shardings = gl.state_shardings(tx, params)
        state = jax.jit(tx.init, out_shardings=shardings)(params)

    Read from the compiled (not executed) ``jax.jit(tx.init)``: moments
    sharded like their param (Adafactor's statistics along the axes they
    keep), counters replicated. The params are kept as inputs even if an
    ``init`` ignores them (an Optax member inside a gradlab chain creates
    its state from shapes alone): the program then still runs on the params'
    devices, and such state is replicated over them, not put on one device.
    """
    check_transformation("tx", tx)
    return jax.jit(tx.init, keep_unused=True).lower(params).compile().output_shardings
