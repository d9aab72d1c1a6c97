"""Extraction's resumable shards: every batch is saved under its own name, and a resumed run equals one that never used shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import emo_core as ec
from emo_core import activations
from emo_core.activations import extract
from emo_core.scenarios import emotion_prompts, training_skeletons
from tests.conftest import tiny_model

BATCH = 4
PROMPTS = emotion_prompts(training_skeletons(1))[:10]  # batches of 4, 4 and 2: two batches of the same size


@pytest.fixture(scope="module")
def tiny_llama(embedded: ec.ModelBundle) -> ec.ModelBundle:
    return ec.bundle_from(tiny_model("llama"), embedded.tokenizer, name="tiny-llama")


@pytest.fixture(scope="module")
def unsharded(tiny_llama: ec.ModelBundle) -> dict[str, torch.Tensor]:
    """The reference: the same batches, extracted without any shard folder."""
    return extract(tiny_llama, PROMPTS, BATCH)


def _assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for site, tensor in expected.items():
        assert torch.equal(got[site], tensor), site


def test_sharded_extraction_equals_unsharded(tiny_llama: ec.ModelBundle, unsharded: dict, tmp_path: Path) -> None:
    _assert_same(extract(tiny_llama, PROMPTS, BATCH, shard_dir=tmp_path), unsharded)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3 and not list(tmp_path.glob("*.partial"))


def test_an_interrupted_extraction_resumes_from_its_shards(
    tiny_llama: ec.ModelBundle, unsharded: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stop_after_two_batches(done: int, total: int) -> None:
        if done == 2 * BATCH:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(tiny_llama, PROMPTS, BATCH, shard_dir=tmp_path, progress=stop_after_two_batches)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2

    computed: list[int] = []
    original = activations.extract_batch

    def counting(bundle: ec.ModelBundle, chunk: list, sites: tuple) -> dict:
        computed.append(len(chunk))
        return original(bundle, chunk, sites)

    monkeypatch.setattr(activations, "extract_batch", counting)
    _assert_same(extract(tiny_llama, PROMPTS, BATCH, shard_dir=tmp_path), unsharded)
    assert computed == [2]  # only the batch the interruption never reached


def test_shards_of_other_prompts_are_not_read(tiny_llama: ec.ModelBundle, unsharded: dict, tmp_path: Path) -> None:
    """A shard is named by its prompts, not only its place: another prompt set in the same folder is extracted afresh."""
    others = emotion_prompts(training_skeletons(2))[-10:]
    extract(tiny_llama, others, BATCH, shard_dir=tmp_path)
    _assert_same(extract(tiny_llama, PROMPTS, BATCH, shard_dir=tmp_path), unsharded)
