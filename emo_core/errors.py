"""Errors that carry one sentence a user can act on; the app shows them instead of tracebacks."""


class EmoCoreError(Exception):
    """Base class: the message is a complete, user-facing sentence."""


class ModelLoadError(EmoCoreError):
    """A model could not be found, downloaded or read."""


class UnsupportedArchitectureError(EmoCoreError):
    """The model's family has no entry in the architecture adapter."""


class InvalidInterventionError(EmoCoreError):
    """An intervention names a layer, head, neuron or row that does not exist."""


class InvalidPromptError(EmoCoreError):
    """A prompt is empty or otherwise cannot be generated from."""


class LimitError(EmoCoreError):
    """A request asks for more than the app allows (reply length, text length, parts, strength, memory, waiting sessions)."""
