"""Shared pieces of the sweep tests."""

from __future__ import annotations


class FakeCompiled:
    """A stand-in for a compiled sweep program of ``size`` configurations whose
    memory is linear in the size: 1000 fixed bytes, 100 per configuration
    (what ``gl.sweep``'s chunk-size search reads from ``memory_analysis()``)."""

    def __init__(self, size: int):
        self.size = size

    def memory_analysis(self):
        m = 1000 + 100 * self.size
        return type("M", (), {"argument_size_in_bytes": m, "output_size_in_bytes": 0,
                              "temp_size_in_bytes": 0, "alias_size_in_bytes": 0})  # fmt: skip
