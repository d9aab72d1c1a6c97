"""Deferred downloads outlive the rerun that replaced their button (the race behind 'Deferred file … not found')."""

from __future__ import annotations

import time

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.media_file_storage import MediaFileStorageError
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from ui import export

SESSION = "dontcare"  # the session id Streamlit uses outside a script run
BUTTON = "1.(2.-3).4"  # a button's place in the page


def run(manager: MediaFileManager, content: bytes) -> str:
    """What one script run does to a deferred button: forget the last run's references, register a new callable, clean up."""
    manager.clear_session_refs(SESSION)
    file_id = manager.add_deferred(lambda: content, "text/csv", BUTTON, "table.csv")
    manager.remove_orphaned_files()
    return file_id


def test_the_patch_is_in_place_for_this_streamlit() -> None:
    assert export.keep_retired_downloads(), "Streamlit changed its private download bookkeeping: revisit ui/export.py"


def test_a_click_with_the_previous_runs_id_still_gets_its_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The browser clicks with the id it was sent one run ago; before the fix the next run's cleanup had dropped it."""
    manager = MediaFileManager(MemoryMediaFileStorage("/media"))
    old = run(manager, b"layer 3")
    new = run(manager, b"layer 4")  # e.g. a layer change: the same button, a new id
    run(manager, b"layer 4")  # and one more rerun before the click arrives
    assert old != new
    url = manager.execute_deferred(old)
    stored = manager.read_file(url.rsplit("/", 1)[-1].split(".")[0])
    assert stored is not None and stored.content == b"layer 3"

    later = time.monotonic() + export.RETIRED_GRACE_S + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    latest = run(manager, b"layer 4")  # the grace is over: the retired ids go, the shown one stays
    with pytest.raises(MediaFileStorageError, match="not found"):
        manager.execute_deferred(old)
    assert manager.execute_deferred(latest)


def test_a_disabled_button_still_revokes_its_callable_at_once() -> None:
    """The grace never keeps a callable Streamlit revokes on purpose (a button drawn disabled)."""
    manager = MediaFileManager(MemoryMediaFileStorage("/media"))
    old = run(manager, b"data")
    manager.remove_deferred(BUTTON)
    manager.remove_orphaned_files()
    with pytest.raises(MediaFileStorageError, match="not found"):
        manager.execute_deferred(old)
    assert manager.__dict__.get("_retired_at", {}) == {}
