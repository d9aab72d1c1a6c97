"""One color (and one symbol) per emotion, used by every chart so a color means the same thing everywhere.

Colors are the Okabe-Ito palette, which stays distinguishable for the common kinds of color blindness. The altair scales
built from them live in ``ui.charts``, so a page without charts (Home) does not import altair.
"""

from __future__ import annotations

EMOTION_COLORS: dict[str, str] = {
    "anger": "#D55E00",
    "sadness": "#0072B2",
    "happiness": "#E69F00",
    "fear": "#CC79A7",
    "surprise": "#56B4E9",
    "disgust": "#009E73",
}
EMOTION_ICONS: dict[str, str] = {"anger": "😠", "sadness": "😢", "happiness": "😊", "fear": "😨", "surprise": "😲", "disgust": "🤢"}
VALENCE_SHAPES: dict[str, str] = {"positive": "triangle-up", "neutral": "circle", "negative": "triangle-down"}
PART_COLORS: dict[str, str] = {"attention": "#5B6C8F", "MLP": "#C98B2B"}


def emotion_label(emotion: str) -> str:
    """``"😠 anger"``: how emotions are named in pickers."""
    return f"{EMOTION_ICONS.get(emotion, '')} {emotion}".strip()
