"""Names under which ``jax.export`` serializes gradlab's NamedTuples.

``jax.export.Exported.serialize()`` refuses a function whose inputs or outputs hold a
NamedTuple type it has no name for -- every optimizer state. Each NamedTuple that
gradlab defines (states, ``MaskedNode``, ``LinesearchInfo``, results such as
``MinimizeResult`` and ``SweepResult``) is registered under ``"gradlab.<ClassName>"``
when gradlab is imported, so an exported training step serializes, and deserializes in
a process that imported gradlab, with no user registration. The names do not
depend on the private module a class lives in, and are part of the saved format: a
class keeps its name. (Optax registers none of its states. JAX takes one registration
per type: a user's own registration of a gradlab state now raises ``ValueError``.)
"""

from __future__ import annotations

import contextlib
import sys

from jax import export

from gradlab._core import GradientTransformation


def _named_tuples() -> list[type]:
    """The NamedTuple classes defined in gradlab's loaded modules, transformations aside."""
    found: dict[str, type] = {}
    for name, module in list(sys.modules.items()):
        if name != "gradlab" and not name.startswith("gradlab."):
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == name
                and issubclass(value, tuple)
                and hasattr(value, "_fields")
                and not issubclass(value, GradientTransformation)
            ):
                other = found.setdefault(value.__qualname__, value)
                if other is not value:
                    raise RuntimeError(  # a developer error: two classes, one name
                        f"two gradlab NamedTuples named {value.__qualname__!r}: "
                        f"{other.__module__} and {value.__module__}"
                    )
    return list(found.values())


def register_for_serialization() -> None:
    """Register every gradlab NamedTuple with ``jax.export`` (once per class)."""
    for cls in _named_tuples():
        # ValueError: already registered (after importlib.reload, say)
        with contextlib.suppress(ValueError):
            export.register_namedtuple_serialization(
                cls, serialized_name=f"gradlab.{cls.__qualname__}"
            )
