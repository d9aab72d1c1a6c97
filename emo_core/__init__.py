"""Emotion Circuit Explorer's library: models, interventions, generation and the emotion pipeline.

Never imports streamlit; the app's pages are thin views over this package. The names below are
imported on first use, so reading a cache (``emo_core.results``) does not pay for loading
transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_EXPORTS = {
    "emo_core.arch": ("ARCH_SPECS", "SITES", "Adapter", "ArchSpec", "ModelShape", "Site"),
    "emo_core.errors": (
        "EmoCoreError",
        "InvalidInterventionError",
        "InvalidPromptError",
        "LimitError",
        "ModelLoadError",
        "UnsupportedArchitectureError",
    ),
    "emo_core.generation": ("GenerationSettings", "Reply", "chat_prompt", "generate", "iter_tokens", "side_by_side", "stream_text"),
    "emo_core.interventions": ("ComponentEdit", "HeadAblation", "NeuronAblation", "ResidualAddition", "capture", "intervene"),
    "emo_core.defaults": ("DEFAULT_MODEL",),
    "emo_core.models": ("ModelBundle", "bundle_from", "load_model"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__version__ = "0.1.0"
__all__ = [
    "ARCH_SPECS",
    "Adapter",
    "ArchSpec",
    "ComponentEdit",
    "DEFAULT_MODEL",
    "EmoCoreError",
    "GenerationSettings",
    "HeadAblation",
    "InvalidInterventionError",
    "InvalidPromptError",
    "LimitError",
    "ModelBundle",
    "ModelLoadError",
    "ModelShape",
    "NeuronAblation",
    "Reply",
    "ResidualAddition",
    "SITES",
    "Site",
    "UnsupportedArchitectureError",
    "bundle_from",
    "capture",
    "chat_prompt",
    "generate",
    "intervene",
    "iter_tokens",
    "load_model",
    "side_by_side",
    "stream_text",
]

if TYPE_CHECKING:
    from emo_core.arch import ARCH_SPECS, SITES, Adapter, ArchSpec, ModelShape, Site
    from emo_core.defaults import DEFAULT_MODEL
    from emo_core.errors import (
        EmoCoreError,
        InvalidInterventionError,
        InvalidPromptError,
        LimitError,
        ModelLoadError,
        UnsupportedArchitectureError,
    )
    from emo_core.generation import GenerationSettings, Reply, chat_prompt, generate, iter_tokens, side_by_side, stream_text
    from emo_core.interventions import ComponentEdit, HeadAblation, NeuronAblation, ResidualAddition, capture, intervene
    from emo_core.models import ModelBundle, bundle_from, load_model


def __getattr__(name: str) -> object:
    if name in _HOME:
        value = getattr(import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emo_core' has no attribute {name!r}")
