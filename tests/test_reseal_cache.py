"""The developer tool that migrates a format-1 cache: it reseals only an intact cache of the current prompt set."""

import json
from pathlib import Path

import pytest

from emo_core.results import load_results
from emo_core.store import FORMAT_VERSION, MANIFEST, TENSORS, CacheError, installed_version
from scripts.reseal_cache import reseal
from tests.synthetic_cache import write_synthetic_cache


@pytest.fixture
def old_cache(tmp_path: Path) -> Path:
    """A cache as format version 1 wrote it: no seal, no skeleton count, only the transformers version."""
    folder = write_synthetic_cache(tmp_path, "old/model", n_skeletons=2)
    raw = json.loads((folder / MANIFEST).read_text())
    for key in ("seal", "skeletons", "libraries"):
        del raw[key]
    raw.update(format_version=1, transformers_version=installed_version("transformers"))
    (folder / MANIFEST).write_text(json.dumps(raw, indent=2))
    return folder


def test_a_format_1_cache_is_refused_then_resealed(old_cache: Path) -> None:
    with pytest.raises(CacheError, match="format version 1"):
        load_results("old/model", old_cache.parent)
    assert "Resealed" in reseal(old_cache, skeletons=2)
    assert load_results("old/model", old_cache.parent).cache.manifest.format_version == FORMAT_VERSION
    assert "already in format version" in reseal(old_cache, skeletons=2)


def test_reseal_refuses_a_damaged_file_or_another_prompt_set(old_cache: Path) -> None:
    with pytest.raises(CacheError, match="another prompt set"):
        reseal(old_cache, skeletons=3)
    (old_cache / TENSORS).write_bytes(b"not the tensors")
    with pytest.raises(CacheError, match="does not match its old manifest"):
        reseal(old_cache, skeletons=2)
