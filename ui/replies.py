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


_PARAGRAPH_BREAK = re.compile(r"(\n\s*\n)")
_EDGES = re.compile(r"^(\s*)(.*?)(\s*)$", re.DOTALL)
_DIRECTIVE_GLUE = "\u200b"  # invisible: lets ``:name[...]`` follow a word or a colon, which Markdown would not read as a directive


def highlighted(prefix: str, rest: str, colour: str = "orange") -> str:
    """``prefix`` then ``rest`` as Markdown, with ``rest`` on a coloured background.

    One highlight per paragraph (a highlight cannot span a blank line) and none on the whitespace around
    it; a highlight that would touch the text before it is glued on with an invisible space.
    """
    pieces = [plain(prefix)]
    for chunk in _PARAGRAPH_BREAK.split(rest):
        lead, body, trail = _EDGES.match(chunk).groups()
        if not body:
            pieces.append(chunk)
            continue
        touching = not lead and bool(pieces[-1][-1:].strip())
        pieces.append(f"{lead}{_DIRECTIVE_GLUE if touching else ''}:{colour}-background[{plain(body)}]{trail}")
    return "".join(pieces)


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
