"""How long a long action will take on this machine: measured, never a constant.

Each kind of action keeps its seconds per unit of work (a decoding step of the grid's batch, a scenario of the chance
check, a strength of the sweep). Before its first run in this process a short probe measures it; every finished run
replaces it with what that run took, so the estimate follows the machine and its load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st


@st.cache_resource(show_spinner=False)
def _paces() -> dict[str, float]:
    return {}


def estimate(action: str, units: float, probe: Callable[[], float]) -> float:
    """Seconds ``units`` of ``action`` will take: the last run's seconds per unit, or ``probe()``'s (seconds per unit)."""
    paces = _paces()
    if action not in paces:
        paces[action] = probe()
    return paces[action] * units


def record(action: str, seconds: float, units: float) -> None:
    """What a finished run of ``action`` took, for the next estimate."""
    if units > 0:
        _paces()[action] = seconds / units


def timed(run: Callable[[], object]) -> float:
    """Seconds ``run()`` takes."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def decode_seconds(run: Callable[[int], object], tokens: int) -> float:
    """Seconds ``run(tokens)`` (a generation of ``tokens`` tokens) will take, from ``run(1)`` (the prompt pass and one step)
    and ``run(3)`` (two steps more) timed: the prompt pass counted once, every further step at its measured time."""
    first, three = timed(lambda: run(1)), timed(lambda: run(3))
    return first + (tokens - 1) * max(0.0, (three - first) / 2)


def say(seconds: float) -> str:
    """ "about 12 s" or "about 2 min", as measured on this machine."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    return f"about {round(seconds / 60)} min"
