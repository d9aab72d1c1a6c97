"""Progress callbacks: how long computations report how far they are, to a progress bar, the app or a test.

A ``Progress`` receives ``(done, total)`` for one computation; a ``StageProgress`` receives ``(stage, done, total)``
for a pipeline of named stages (``build``, ``evaluate``), and ``stage`` turns it into the ``Progress`` of one stage.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]
StageProgress = Callable[[str, int, int], None]


def stage(progress: StageProgress | None, name: str) -> Progress | None:
    """The ``Progress`` of stage ``name`` of ``progress`` (``None`` when nobody listens)."""
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)
