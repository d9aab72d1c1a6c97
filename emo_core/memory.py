"""Whether a model fits in memory, judged from its config before any weight is read: parameters x bytes per weight vs free memory.

A model that does not fit would swap the machine to a standstill or be killed halfway through loading, taking every
session with it; refusing it up front, with its size, tells the user what to pick instead.
"""

from __future__ import annotations

import psutil
import torch
from accelerate import init_empty_weights
from transformers import AutoModelForCausalLM, PretrainedConfig

from emo_core.errors import ModelLoadError

HEADROOM = 1.2  # the weights, plus room for activations, the tokenizer and the app itself
MAX_LAYERS = 1024  # far beyond any real model (the largest open ones have about 130); building more on the meta device takes minutes
GB = 1e9


def parameter_count(config: PretrainedConfig) -> int:
    """The exact number of parameters of the causal LM ``config`` describes, built on the meta device (no memory, no weights)."""
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # empty init leaves tied embeddings as two tensors; loading ties them, so count them once
    return sum(parameter.numel() for parameter in model.parameters())


def weight_dtype(config: PretrainedConfig, dtype: str) -> torch.dtype:
    """The dtype the weights take once loaded as ``dtype`` (``auto``: the checkpoint's own, float32 when it names none)."""
    chosen = getattr(config, "dtype", None) if dtype == "auto" else dtype
    if isinstance(chosen, str):
        chosen = getattr(torch, chosen, None)
    return chosen if isinstance(chosen, torch.dtype) else torch.float32


def free_memory(device: str) -> int:
    """Bytes free where the weights go: RAM for ``cpu``, GPU 0 for ``cuda``, every GPU and RAM together for ``auto``."""
    ram = psutil.virtual_memory().available
    if device == "cpu":
        return ram
    gpus = [torch.cuda.mem_get_info(index)[0] for index in range(torch.cuda.device_count())]
    return gpus[0] if device == "cuda" else sum(gpus) + ram


def check_fits(config: PretrainedConfig, dtype: str, device: str, name: str) -> None:
    """Raise ``ModelLoadError`` with the model's estimated size when it would not fit in free memory."""
    layers = config.get_text_config().num_hidden_layers
    if not 0 < layers <= MAX_LAYERS:
        raise ModelLoadError(f"{name} has {layers:,} layers by its config.json, and a real model has 1 to {MAX_LAYERS:,}; check it.")
    count = parameter_count(config)
    loaded = weight_dtype(config, dtype)
    needed = count * loaded.itemsize
    free = free_memory(device)
    if needed * HEADROOM > free:
        where = {"cpu": "this computer has", "cuda": "the GPU has"}.get(device, "the GPUs and RAM have")
        halve = ", or load it as bfloat16 (half the size)" if loaded.itemsize > 2 else ""
        raise ModelLoadError(
            f"{name} has {count / 1e9:.2f} billion parameters, about {needed / GB:.1f} GB as {str(loaded).removeprefix('torch.')}, "
            f"and {where} {free / GB:.1f} GB free; pick a smaller model{halve}."
        )
