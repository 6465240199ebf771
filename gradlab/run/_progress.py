"""Progress reports for long sweeps: a tqdm bar (optional extra) or plain lines.

The bar counts training steps over all chunks. It advances once per chunk
and, on long runs, once per block of steps from inside the compiled program
(a ``jax.debug.callback`` every ``every`` steps, never every step: each is a
round trip to Python). Without tqdm the report is one line per chunk.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

# Per-block callbacks only on runs this long: a bar that moves once per chunk is
# enough for short ones, and each callback costs a host round trip.
MIN_STEPS_FOR_BLOCKS = 50
BLOCKS_PER_CHUNK = 20


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """``enabled``: True, False or None (on when stderr is a terminal).

    Built before the programs are compiled (they call :meth:`steps_done`);
    :meth:`start` opens the bar once the number of chunks is known.
    """

    def __init__(self, enabled: bool | None, *, num_steps: int, what: str):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = bool(enabled)
        self.num_steps, self.what = num_steps, what
        self.num_chunks = self.chunk = self._done_in_chunk = 0
        self._lock = threading.Lock()
        self._tqdm = _tqdm() if self.enabled else None
        self._bar = None

    @property
    def block_every(self) -> int | None:
        """Steps between in-program callbacks, or None for no callbacks."""
        if self._tqdm is None or self.num_steps < MIN_STEPS_FOR_BLOCKS:
            return None
        return -(-self.num_steps // BLOCKS_PER_CHUNK)

    def start(self, num_chunks: int, compile_seconds: float) -> None:
        self.num_chunks = num_chunks
        if self._tqdm is not None:
            self._bar = self._tqdm(
                total=num_chunks * self.num_steps, desc=self.what, unit="step", leave=True
            )
            self._bar.set_postfix_str(f"compiled in {compile_seconds:.1f} s")
        elif self.enabled:
            self._print(f"compiled in {compile_seconds:.2f} s; {num_chunks} chunk(s) to run")

    def steps_done(self, steps: Any) -> None:
        """Called from the compiled program: ``steps`` of the current chunk are done."""
        with self._lock:
            steps = int(steps)
            if self._bar is not None and steps > self._done_in_chunk:
                self._bar.update(steps - self._done_in_chunk)
                self._done_in_chunk = steps

    def start_chunk(self, label: str) -> None:
        self.chunk += 1
        self._done_in_chunk = 0
        self._t0 = time.perf_counter()
        if self._bar is not None:
            self._bar.set_postfix_str(f"chunk {self.chunk}/{self.num_chunks}: {label}")

    def end_chunk(self, configs: str) -> None:
        self.steps_done(self.num_steps)
        if self.enabled and self._bar is None:
            seconds = time.perf_counter() - self._t0
            self._print(
                f"chunk {self.chunk}/{self.num_chunks} done: {configs}, "
                f"{self.num_steps} steps in {seconds:.2f} s"
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _print(self, text: str) -> None:
        print(f"{self.what}: {text}", file=sys.stderr, flush=True)
