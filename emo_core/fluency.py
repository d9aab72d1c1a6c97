"""Is a reply still language? Flags the token soup that over-strong steering produces.

A reply is degenerate when it is empty, repeats one word or a short phrase over and over, is mostly
symbols, or has too many letters in strings that are not English words. The word list is the vocabulary of the
judge's MiniLM tokenizer (about 20,000 whole English words), so no extra data is needed.
"""

from __future__ import annotations

import re
from functools import cache

from emo_core.judge import minilm_model_dir

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
MAX_WORD_RUN = 3
MIN_DISTINCT_BIGRAMS = 0.5
MIN_LETTER_SHARE = 0.6
MAX_NONWORD_SHARE = 0.3
LONE_LETTERS = frozenset({"a", "i"})


@cache
def english_words() -> frozenset[str]:
    """Whole-word entries of the MiniLM (BERT uncased) vocabulary."""
    lines = (minilm_model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(w for w in lines if w.isalpha() and not w.startswith("##"))


def _longest_run(words: list[str]) -> int:
    longest = run = 1
    for previous, current in zip(words, words[1:], strict=False):
        run = run + 1 if current == previous else 1
        longest = max(longest, run)
    return longest


def _nonword_share(words: list[str]) -> float:
    """Share of the letters in non-words: unknown words (names in Title case excepted) and lone letters other than a and I."""
    vocabulary = english_words()
    unknown = 0
    for word in words:
        lower = word.lower()
        if word.istitle() and len(word) > 1:
            continue
        if (len(lower) == 1 and lower not in LONE_LETTERS) or lower.split("'")[0] not in vocabulary:
            unknown += len(word)
    return unknown / sum(len(w) for w in words)


def degenerate_reason(text: str) -> str | None:
    """Why ``text`` is not a fluent reply, or ``None`` when it reads as language."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    letters = sum(ch.isalpha() or ch.isspace() for ch in stripped)
    if letters / len(stripped) < MIN_LETTER_SHARE:
        return "mostly symbols"
    words = WORD.findall(stripped)
    if not words:
        return "no words"
    lowered = [w.lower() for w in words]
    if _longest_run(lowered) > MAX_WORD_RUN:
        return "repeated word"
    bigrams = list(zip(lowered, lowered[1:], strict=False))
    if len(bigrams) >= 8 and len(set(bigrams)) / len(bigrams) < MIN_DISTINCT_BIGRAMS:
        return "repeated phrase"
    if len(words) >= 4 and _nonword_share(words) > MAX_NONWORD_SHARE:
        return "non-words"
    return None


def is_degenerate(text: str) -> bool:
    """True when ``degenerate_reason`` finds a reason."""
    return degenerate_reason(text) is not None
