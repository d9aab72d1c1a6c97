"""The cache format: round trip, and a clear refusal of stale, foreign or damaged caches."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from emo_core.store import FORMAT_VERSION, MANIFEST, TENSORS, CacheError, Manifest, model_slug, read_cache, write_cache


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    manifest = Manifest("tiny/model", "llama", {"n_layers": 3}, "abc123", ("resid_mid", "resid_post"), "float32")
    tensors = {"directions.resid_post": torch.arange(12.0).reshape(2, 6)}
    tables = {"top_heads": pd.DataFrame({"layer": [1, 2], "head": [0, 3], "score": [0.5, 0.25]})}
    write_cache(folder, manifest, tensors, tables)
    return folder


def test_round_trip(cache_dir: Path) -> None:
    cache = read_cache(cache_dir, model_id="tiny/model", prompt_set_hash="abc123")
    assert torch.equal(cache.tensors["directions.resid_post"], torch.arange(12.0).reshape(2, 6))
    assert cache.tables["top_heads"]["head"].tolist() == [0, 3]
    assert cache.manifest.sites == ("resid_mid", "resid_post") and cache.manifest.format_version == FORMAT_VERSION
    assert not list(cache_dir.parent.glob("*.partial"))


def test_other_model_or_prompt_set_is_refused(cache_dir: Path) -> None:
    with pytest.raises(CacheError, match="built for 'tiny/model', not 'other'"):
        read_cache(cache_dir, model_id="other")
    with pytest.raises(CacheError, match="different prompt set"):
        read_cache(cache_dir, prompt_set_hash="zzz")


def test_other_format_version_is_refused(cache_dir: Path) -> None:
    raw = json.loads((cache_dir / MANIFEST).read_text())
    raw["format_version"] = FORMAT_VERSION + 1
    (cache_dir / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(CacheError, match="format version"):
        read_cache(cache_dir)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_files_are_refused(cache_dir: Path, damage: str) -> None:
    path = cache_dir / TENSORS
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        path.unlink()
    with pytest.raises(CacheError, match="missing or damaged"):
        read_cache(cache_dir)


def test_missing_or_garbled_manifest(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(CacheError, match="No cache at"):
        read_cache(tmp_path / "nothing")
    (cache_dir / MANIFEST).write_text("{not json")
    with pytest.raises(CacheError, match="manifest .* is damaged"):
        read_cache(cache_dir)


def test_model_slug() -> None:
    assert model_slug("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen--Qwen2.5-0.5B-Instruct"
    assert model_slug("/home/me/models/llama 3/") == "home--me--models--llama--3"
