"""What one request may ask of the shared model: reply length, typed text, steering strength and seed.

The app's widgets, its links and the CLI's arguments are bounded by these same numbers, and the library
checks them again where a request enters it, so no link, script or scenario file can ask for more.
(The number of parts switched off at once is ``emo_core.parts.MAX_PARTS``.)
"""

from __future__ import annotations

import math

from emo_core.errors import LimitError

MAX_NEW_TOKENS = 128  # tokens in one reply: a few seconds of decoding on a laptop CPU, and longer than any emotion needs
MAX_TEXT = 1000  # characters of a typed scenario (or one scenario file's user turn): a paragraph, not a document
MAX_STRENGTH = 20.0  # steering strength either way; replies break into token soup from about 4
MAX_SEED = 2**31 - 1  # the largest seed the app offers (and a link may carry)


def check_reply_length(tokens: int, least: int = 1) -> None:
    """Raise ``LimitError`` unless a reply of ``tokens`` new tokens is allowed (at least ``least``)."""
    if not least <= tokens <= MAX_NEW_TOKENS:
        raise LimitError(f"A reply of {tokens} tokens is not possible; choose from {least} to {MAX_NEW_TOKENS} tokens.")


def check_text(text: str, what: str = "The scenario") -> None:
    """Raise ``LimitError`` when ``text`` is longer than ``MAX_TEXT`` characters."""
    if len(text) > MAX_TEXT:
        raise LimitError(f"{what} has {len(text):,} characters; the limit is {MAX_TEXT:,}, so shorten it.")


def check_strength(strength: float) -> None:
    """Raise ``LimitError`` unless ``strength`` is a finite number from ``-MAX_STRENGTH`` to ``MAX_STRENGTH``."""
    if not (math.isfinite(strength) and abs(strength) <= MAX_STRENGTH):
        raise LimitError(f"A steering strength of {strength} is not possible; choose a number from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g}.")


def check_seed(seed: int) -> None:
    """Raise ``LimitError`` unless ``seed`` is a whole number from 0 to ``MAX_SEED``."""
    if not 0 <= seed <= MAX_SEED:
        raise LimitError(f"The seed {seed} is not possible; choose a whole number from 0 to {MAX_SEED:,}.")
