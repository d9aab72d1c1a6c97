"""Extraction's bookkeeping: progress as a bar or as callbacks, shard folders made on demand, neutral means summed over
batches (each test kills mutants of activations.py that the extraction tests let live)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import emo_core as ec
from emo_core.activations import extract, extract_batch, neutral_means
from emo_core.generation import encode
from emo_core.scenarios import PromptSpec, emotion_prompts, prompt_set_hash, training_skeletons
from tests.conftest import tiny_model

PROMPTS = emotion_prompts(training_skeletons(1))[:5]  # batches of 2, 2 and 1


@pytest.fixture(scope="module")
def tiny_llama(embedded: ec.ModelBundle) -> ec.ModelBundle:
    return ec.bundle_from(tiny_model("llama"), embedded.tokenizer, name="tiny-llama")


def test_progress_goes_to_the_callback_with_the_total_or_to_one_bar(tiny_llama: ec.ModelBundle, capsys: pytest.CaptureFixture) -> None:
    # kills progress(done, None), 'disable=progress is None', and the bar's total, name and unit
    calls: list[tuple[int, int]] = []
    extract(tiny_llama, PROMPTS, batch_size=2, progress=lambda done, total: calls.append((done, total)), sites=("resid_post",))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert capsys.readouterr().err == ""
    extract(tiny_llama, PROMPTS, batch_size=2, sites=("resid_post",))
    bar = capsys.readouterr().err
    assert "activations: 100%" in bar and "5/5" in bar and re.search(r"(prompt/s|s/prompt)\]", bar)


def test_shards_go_into_a_folder_made_on_demand(tiny_llama: ec.ModelBundle, tmp_path: Path) -> None:
    # a folder two levels down kills mkdir(parents=False/None); a second batch into the same folder kills exist_ok=False/None
    folder = tmp_path / "work" / "shards"
    extract(tiny_llama, PROMPTS, batch_size=2, shard_dir=folder, sites=("resid_post",))
    assert sorted(path.name for path in folder.iterdir()) == [
        f"batch_000000_2_{prompt_set_hash(PROMPTS[:2])}.safetensors",
        f"batch_000002_2_{prompt_set_hash(PROMPTS[2:4])}.safetensors",
        f"batch_000004_1_{prompt_set_hash(PROMPTS[4:])}.safetensors",
    ]


def test_neutral_means_add_up_every_batch(tiny_llama: ec.ModelBundle) -> None:
    # one prompt per batch kills a total or a count that keeps only the last batch ('=' for '+=') or subtracts it
    prompts = [
        PromptSpec("s", "work", "neutral", None, "Be brief.", text) for text in ("Hello there", "A much longer message about my day")
    ]
    together = neutral_means(tiny_llama, prompts, batch_size=2)
    one_by_one = neutral_means(tiny_llama, prompts, batch_size=1)
    assert together.keys() == one_by_one.keys() == {"attn_z", "mlp_post"}
    for site, mean in together.items():
        assert mean.shape == (tiny_llama.shape.n_layers, tiny_llama.shape.site_width(site))
        torch.testing.assert_close(one_by_one[site], mean, rtol=1e-7, atol=1e-9)


def test_a_batch_is_read_at_the_last_token_of_the_prompt_with_its_system_message(tiny_llama: ec.ModelBundle) -> None:
    # kills chat_prompt without the system message (the emotion request), which extract and extract_batch would share
    prompt = PROMPTS[0]
    assert prompt.system
    acts = extract_batch(tiny_llama, [prompt], sites=("resid_post",))
    batch = encode(tiny_llama, [ec.chat_prompt(tiny_llama, prompt.user, prompt.system)])
    with torch.inference_mode(), ec.capture(tiny_llama, ["resid_post"]) as captured:
        tiny_llama.model(**batch)
    expected = torch.stack([captured[("resid_post", layer)][0, -1] for layer in range(tiny_llama.shape.n_layers)])
    torch.testing.assert_close(acts["resid_post"][0], expected.float(), rtol=0, atol=1e-6)
