"""One color (and one symbol) per emotion, used by every chart so a color means the same thing everywhere.

Colors are the Okabe-Ito palette, which stays distinguishable for the common kinds of color blindness.
"""

from __future__ import annotations

import altair as alt

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


def emotion_scale() -> alt.Scale:
    """The shared emotion -> color scale."""
    return alt.Scale(domain=list(EMOTION_COLORS), range=list(EMOTION_COLORS.values()))


def valence_scale() -> alt.Scale:
    """The shared valence -> point shape scale."""
    return alt.Scale(domain=list(VALENCE_SHAPES), range=list(VALENCE_SHAPES.values()))


def part_scale() -> alt.Scale:
    """Attention vs MLP colors (kept apart from the emotion colors)."""
    return alt.Scale(domain=list(PART_COLORS), range=list(PART_COLORS.values()))


def emotion_label(emotion: str) -> str:
    """``"😠 anger"``: how emotions are named in pickers."""
    return f"{EMOTION_ICONS.get(emotion, '')} {emotion}".strip()
