"""Classroom-safe decoding: slurs and profanity are blocked while the model writes, token by token.

The blocked words come from ``datasets/blocked_words.txt`` (its header explains the format). A *word*
is a maximal run of ASCII letters with apostrophes allowed inside it ("don't"); every other character
(spaces, digits, punctuation, accented letters, the replacement character of a half-decoded byte)
separates words. A text *emits a listed word* when :func:`blocked_in` finds one in it.

A decode loop asks a :class:`WordGuard` before appending each token and, through :func:`choose_allowed`,
takes the model's best token that the guard allows. If the loop only appends allowed tokens, and checks
the last one with ``final=True``, the decoded reply contains no listed word.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

WORD_LIST_PATH = Path(__file__).parent / "datasets" / "blocked_words.txt"

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_HARD = re.compile(r"[^A-Za-z']")  # a character that no word can span
_ENTRY = re.compile(r"[a-z]+(?:'[a-z]+)*")

# Fallback tokens: each starts with a separator and adds no listed word, so it is allowed whenever the
# reply's unfinished word may end here (see WordGuard.allows). Best-scored first when used.
SAFE_TEXTS = (".", ",", "!", "?", ";", ":", "\n", " ", " the", " and", " a", " I", " it", " is", " to", " of")


class WordListError(ValueError):
    """The blocked-word file has a malformed, duplicate or contradictory line (the message names it)."""


class NoSafeTokenError(RuntimeError):
    """No token could be allowed: the reply already holds a listed word, so earlier tokens bypassed the guard."""


@dataclass(frozen=True)
class WordList:
    """The parsed list: blocked whole words and stems, and the allowed words and stems that override stems."""

    exact: frozenset[str]
    stems: frozenset[str]
    allowed: frozenset[str] = frozenset()
    allowed_stems: frozenset[str] = frozenset()

    @functools.cached_property
    def _rules(self) -> tuple[tuple[int, ...], dict[str, bool]]:
        """Stem lengths, longest first, and each stem's verdict (True blocks, False allows)."""
        rules = {stem: True for stem in self.stems} | {stem: False for stem in self.allowed_stems}
        return tuple(sorted({len(stem) for stem in rules}, reverse=True)), rules

    def _stem_blocks(self, part: str) -> bool:
        if part in self.allowed:
            return False
        lengths, rules = self._rules
        for length in lengths:
            if length <= len(part) and (verdict := rules.get(part[:length])) is not None:
                return verdict  # the longest matching stem decides
        return False

    def blocks(self, word: str) -> bool:
        """Whether the list blocks this one word (case-insensitive); also when any apostrophe-separated part is blocked."""
        word = word.lower()
        if word in self.exact:
            return True
        return any(part in self.exact or self._stem_blocks(part) for part in word.split("'"))


def parse_word_list(text: str, source: str = "word list") -> WordList:
    """Parse the file format described in ``blocked_words.txt``; raise :class:`WordListError` naming the bad line."""
    kinds: dict[str, set[str]] = {"exact": set(), "stems": set(), "allowed": set(), "allowed_stems": set()}
    seen: dict[str, int] = {}
    allowed_at: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        allow = line.startswith("!")
        body = line[1:] if allow else line
        stem = body.endswith("*")
        body = body[:-1] if stem else body
        where = f"{source}, line {number} ({raw.strip()!r})"
        if not _ENTRY.fullmatch(body):
            raise WordListError(f"{where}: an entry must be lowercase letters, with apostrophes only inside a word.")
        if stem and "'" in body:
            raise WordListError(f"{where}: a stem cannot hold an apostrophe (stems match the parts between apostrophes).")
        key = body + ("*" if stem else "")
        if key in seen:
            raise WordListError(f"{where}: {key!r} is already listed on line {seen[key]}.")
        seen[key] = number
        kinds[("allowed_stems" if stem else "allowed") if allow else ("stems" if stem else "exact")].add(body)
        if allow:
            allowed_at.append((where, body))
    stems = kinds["stems"]
    for where, body in allowed_at:  # an allowed entry must undo some shorter blocked stem, or it is a typo
        if not any(body.startswith(stem) for stem in stems):
            raise WordListError(f"{where}: no blocked stem starts this allowed entry, so it allows nothing.")
    return WordList(**{name: frozenset(entries) for name, entries in kinds.items()})


@functools.cache
def blocked_words() -> WordList:
    """The project's list, read once from ``datasets/blocked_words.txt``."""
    return parse_word_list(WORD_LIST_PATH.read_text(encoding="utf-8"), source=WORD_LIST_PATH.name)


def is_blocked(word: str) -> bool:
    """Whether one whole word (letters and apostrophes, any case) is blocked by the list."""
    return blocked_words().blocks(word)


def blocked_in(text: str) -> list[str]:
    """The blocked words the text contains as whole words, lowercased, in order of first appearance."""
    words = blocked_words()
    found: list[str] = []
    for match in WORD.finditer(text):
        word = match.group().lower()
        if word not in found and words.blocks(word):
            found.append(word)
    return found


def _as_ids(ids: Sequence[int]) -> list[int]:
    return ids.tolist() if hasattr(ids, "tolist") else [int(token) for token in ids]


class WordGuard:
    """Says whether a reply stays free of listed words if one more token is appended.

    ``allows`` looks only at the reply's tail: the words the new token completes and the unfinished word
    at the end. It refuses a token when a completed word is blocked; when the token is final and the
    unfinished word is blocked (a final check re-reads the whole reply); and, so that the loop can never
    be cornered, when the unfinished word is blocked and no single token (a letter, or the rest of an
    allowed word) can still turn it into an unblocked word. Hence, in every state an allowed token leaves,
    either a separator (any of ``safe_tokens``) or one of ``escape_tokens`` is allowed, final or not.

    The reasoning assumes a decoder that concatenates token bytes (GPT-2-style byte-level BPE, as in
    SmolLM2): an ASCII character decodes the same in any context, and a multi-byte character split across
    tokens is a non-letter both before and after it is whole. For other tokenizers the final check still
    keeps listed words out of the reply; only the no-cornering property is unproven.

    ``eos_ids`` adds ids that end a reply (besides ``tokenizer.eos_token_id``); ``window`` is how many
    tokens back the tail is decoded from (further back when they hold no word boundary).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, eos_ids: Iterable[int] = (), words: WordList | None = None, window: int = 16):
        self.tokenizer = tokenizer
        self.words = words if words is not None else blocked_words()
        self.eos_ids = frozenset(int(token) for token in eos_ids) | (
            frozenset() if tokenizer.eos_token_id is None else {int(tokenizer.eos_token_id)}
        )
        self.window = window
        self.vocab_size = len(tokenizer)
        self._escape_cache: dict[str, tuple[int, ...]] = {}
        # Letter runs that one token writes exactly: the 26 letters and every ending of an allowed entry.
        pieces = set(string.ascii_lowercase)
        for entry in self.words.allowed | self.words.allowed_stems:
            pieces.update(entry[cut:] for cut in range(1, len(entry)))
        self.letter_tokens = {piece: token for piece in sorted(pieces) if (token := self._single_token(piece)) is not None}
        self.safe_tokens = tuple(
            token
            for text in SAFE_TEXTS
            if (token := self._single_token(text)) is not None and _HARD.match(text) and not any(map(self.words.blocks, WORD.findall(text)))
        )

    def _single_token(self, text: str) -> int | None:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 and self._decode(ids) == text else None

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _tail(self, ids: list[int]) -> str:
        """The decoded end of ``ids``, starting at a word boundary before the last token's text (or at the reply's start).

        Decodes ``window`` tokens back, further when those hold no separator (a word longer than the
        window), and drops the text up to the first separator, which may be the middle of a word.
        """
        before = len(ids) - 1
        start = max(0, before - self.window)
        while start > 0 and not _HARD.search(self._decode(ids[start:before])):
            start = max(0, start - self.window)
        text = self._decode(ids[start:])
        if start == 0:
            return text
        cut = _HARD.search(text)
        return text[cut.end() :] if cut else self._decode(ids)

    def _open_word(self, text: str) -> tuple[list[str], str]:
        """The words that are complete in ``text`` and the unfinished word at its end ("" when none).

        The unfinished word keeps a trailing apostrophe, which more letters could still join to it.
        """
        matches = list(WORD.finditer(text))
        words = [match.group() for match in matches]
        if matches and text[matches[-1].end() :] in ("", "'"):
            return words[:-1], text[matches[-1].start() :]
        return words, ""

    def _escapes(self, unfinished: str) -> tuple[int, ...]:
        """Letter tokens after which the unfinished word is no longer blocked (cached per lowercased word)."""
        key = unfinished.lower()
        if key not in self._escape_cache:
            self._escape_cache[key] = tuple(token for piece, token in self.letter_tokens.items() if not self.words.blocks(key + piece))
        return self._escape_cache[key]

    def allows(self, reply_ids: Sequence[int], token: int, final: bool) -> bool:
        """Whether appending ``token`` to the generated reply ``reply_ids`` keeps it free of listed words.

        ``final`` means ``token`` is the reply's last (the length limit); an end-of-sequence token always is.
        """
        token = int(token)
        if not 0 <= token < self.vocab_size:
            return False  # an id the tokenizer cannot decode: nothing can be said about its text
        ids = _as_ids(reply_ids) + [token]
        if final or token in self.eos_ids:
            return not any(map(self.words.blocks, WORD.findall(self._decode(ids))))
        complete, unfinished = self._open_word(self._tail(ids))
        if any(map(self.words.blocks, complete)):
            return False
        return not self.words.blocks(unfinished.rstrip("'")) or bool(self._escapes(unfinished))

    def escape_tokens(self, reply_ids: Sequence[int]) -> tuple[int, ...]:
        """Tokens that continue the reply's unfinished word into an unblocked word (empty when there is none)."""
        ids = _as_ids(reply_ids)
        if not ids:
            return ()
        _, unfinished = self._open_word(self._tail(ids))
        return self._escapes(unfinished) if self.words.blocks(unfinished.rstrip("'")) else ()


def choose_allowed(
    scores: torch.Tensor,
    reply_ids: Sequence[int],
    guard: WordGuard,
    pick: Callable[[torch.Tensor], int],
    final_for: Callable[[int], bool],
    max_tries: int = 64,
) -> int:
    """The token ``pick`` prefers among those ``guard`` allows after ``reply_ids``.

    ``scores`` is one row's next-token scores (not modified); ``pick`` chooses from scores (argmax, or a
    seeded sample) and is called again with each refused token set to -inf; ``final_for(token)`` says
    whether that token would end the reply. After ``max_tries`` picks, or when every score is -inf, the
    fallback takes the best-scored of ``guard.safe_tokens`` and ``guard.escape_tokens(reply_ids)`` that the
    guard allows; one of them always is while every earlier token was allowed (see :class:`WordGuard`).
    """
    token = int(pick(scores))
    if guard.allows(reply_ids, token, final_for(token)):
        return token
    masked = scores.detach().clone()
    for _ in range(max_tries - 1):
        if 0 <= token < masked.shape[-1]:
            masked[token] = -math.inf
        if float(masked.max()) == -math.inf:
            break  # every token refused
        token = int(pick(masked))
        if guard.allows(reply_ids, token, final_for(token)):
            return token

    def preference(candidate: int) -> float:
        score = float(scores[candidate]) if candidate < scores.shape[-1] else -math.inf
        return -math.inf if math.isnan(score) else score

    candidates = dict.fromkeys(guard.safe_tokens + guard.escape_tokens(reply_ids))
    for candidate in sorted(candidates, key=preference, reverse=True):
        if guard.allows(reply_ids, candidate, final_for(candidate)):
            return candidate
    raise NoSafeTokenError("No token keeps this reply free of blocked words: it already holds one, so earlier tokens skipped the guard.")
