"""Taking turns on one shared model, with a bounded waiting line.

Two generations at once on one model each run at half speed, so callers take turns. A line without a bound
would let a classroom of tabs queue minutes of work behind each other, so once ``max_waiting`` callers wait,
the next one is refused at once with a message instead of joining.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from emo_core.errors import LimitError

MAX_WAITING = 32  # callers that may wait behind the one running: a class of 30, each with a short pass (a meter, a trace) after its reply


class Turns:
    """One caller at a time runs; up to ``max_waiting`` more wait in line; further callers get a ``LimitError``."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self._running = threading.Lock()
        self._count = threading.Lock()  # guards ``waiting``
        self.waiting = 0

    @property
    def busy(self) -> bool:
        """Whether a caller has the turn now."""
        return self._running.locked()

    def acquire(self, on_wait: Callable[[], object] | None = None, bounded: bool = True) -> None:
        """Take the turn, waiting (after calling ``on_wait``, e.g. to say so) while another caller has it. The shared
        live batch (``batching.py``), which speaks for many sessions at once, waits with ``bounded=False``.

        Raises:
            LimitError: ``max_waiting`` callers are waiting already (``bounded`` only); nothing was taken.
        """
        if self._running.acquire(blocking=False):
            return
        with self._count:
            if bounded and self.waiting >= self.max_waiting:
                raise LimitError(
                    f"The shared model is busy and {self.waiting} other requests are already waiting for it; try again in a minute."
                )
            self.waiting += 1
        try:
            if on_wait is not None:
                on_wait()
            self._running.acquire()
        finally:
            with self._count:
                self.waiting -= 1

    def release(self) -> None:
        """End the turn taken by ``acquire``; the next caller in line runs."""
        self._running.release()
