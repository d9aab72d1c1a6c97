"""How the model's replies are drawn: as plain text inside Markdown, redrawn in place while they grow."""

from __future__ import annotations

import re
from collections.abc import Iterable

import streamlit as st

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~$])")
_LONE_NEWLINE = re.compile(r"(?<!\n)\n(?!\n)")  # a line break inside a paragraph; blank lines stay paragraph breaks


def plain(text: str) -> str:
    """``text`` escaped so Markdown shows it as written (a reply's ``*`` or ``#`` stays a character)."""
    return _LONE_NEWLINE.sub("  \n", _MARKDOWN_SPECIALS.sub(r"\\\1", text))


def sentence(text: str) -> str:
    """``text`` as a sentence: stripped, ending with a full stop unless it already ends with punctuation."""
    text = text.strip()
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def stream_into(slot: st.delta_generator.DeltaGenerator, texts: Iterable[str], cursor: str = " ▌") -> str:
    """Redraw ``slot`` with each growing text (never appending pieces), then the final text; returns it."""
    text = ""
    for text in texts:
        slot.markdown(plain(text) + cursor)
    slot.markdown(plain(text))
    return text
