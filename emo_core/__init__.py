"""Emotion Circuit Explorer's library: models, interventions, generation and the emotion pipeline.

Never imports streamlit; the app's pages are thin views over this package.
"""

from emo_core.arch import ARCH_SPECS, SITES, Adapter, ArchSpec, ModelShape, Site
from emo_core.errors import (
    EmoCoreError,
    InvalidInterventionError,
    InvalidPromptError,
    ModelLoadError,
    UnsupportedArchitectureError,
)
from emo_core.generation import GenerationSettings, Reply, chat_prompt, generate, iter_tokens, side_by_side, stream_text
from emo_core.interventions import (
    ComponentEdit,
    HeadAblation,
    NeuronAblation,
    ResidualAddition,
    capture,
    intervene,
)
from emo_core.models import DEFAULT_MODEL, ModelBundle, bundle_from, load_model

__version__ = "0.1.0"

__all__ = [
    "ARCH_SPECS",
    "DEFAULT_MODEL",
    "SITES",
    "Adapter",
    "ArchSpec",
    "ComponentEdit",
    "EmoCoreError",
    "GenerationSettings",
    "HeadAblation",
    "InvalidInterventionError",
    "InvalidPromptError",
    "ModelBundle",
    "ModelLoadError",
    "ModelShape",
    "NeuronAblation",
    "Reply",
    "ResidualAddition",
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
