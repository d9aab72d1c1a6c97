"""The cache writer's edges that the format tests leave open: nested and repeated writes, an interrupted write, tables
written from filtered frames, and the names that errors and folders fall back to (each test kills mutants of store.py)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from emo_core.store import (
    FORMAT_VERSION,
    CacheError,
    Manifest,
    installed_version,
    model_slug,
    read_cache,
    rebuild_command,
    write_cache,
    write_manifest,
)

MANIFEST = Manifest("tiny/model", "llama", {"n_layers": 3}, "abc123", ("resid_post",), "float32")
TENSORS = {"directions.resid_post": torch.arange(6.0)}


def test_a_cache_is_written_into_new_folders_and_replaces_an_older_one(tmp_path: Path) -> None:
    # kills mkdir(parents=False/None) for the staging folder and a skipped removal of the older cache before the rename
    folder = tmp_path / "new" / "root" / "tiny"
    write_cache(folder, MANIFEST, TENSORS, {"old": pd.DataFrame({"x": [1]})})
    write_cache(folder, MANIFEST, {"directions.resid_post": torch.ones(2)}, {})
    cache = read_cache(folder)
    assert torch.equal(cache.tensors["directions.resid_post"], torch.ones(2)) and cache.tables == {}
    assert sorted(path.name for path in folder.iterdir()) == ["manifest.json", "tensors.safetensors"]


def test_an_interrupted_write_leaves_only_a_partial_folder_that_the_next_write_clears(tmp_path: Path) -> None:
    # the staging folder is '<name>.partial' (git ignores it): kills the mutated suffixes and a skipped clean-up of a stale one
    folder = tmp_path / "tiny"
    unwritable = pd.DataFrame({"mixed": [1, "a"]})  # pyarrow refuses a column of ints and strings
    with pytest.raises(Exception, match="mixed"):
        write_cache(folder, MANIFEST, TENSORS, {"bad": unwritable})
    assert not folder.exists() and (tmp_path / "tiny.partial").is_dir()
    write_cache(folder, MANIFEST, TENSORS, {})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tiny"]


def test_tables_are_stored_without_their_index(tmp_path: Path) -> None:
    # a filtered frame keeps its row labels in memory; the cache stores rows only: kills index=True / None
    table = pd.DataFrame({"layer": [1, 2, 3, 4], "score": [0.1, 0.2, 0.3, 0.4]})
    write_cache(tmp_path / "tiny", MANIFEST, TENSORS, {"top": table[table["layer"] % 2 == 0]})
    read = read_cache(tmp_path / "tiny").tables["top"]
    assert list(read.columns) == ["layer", "score"] and read.index.tolist() == [0, 1]
    assert read["layer"].tolist() == [2, 4]


def test_model_slug_keeps_every_letter_and_falls_back_to_model() -> None:
    # kills strip('XX/XX') (eats a leading or trailing X) and the mutated fallback
    assert model_slug("/Xenova/tiny-X/") == "Xenova--tiny-X"
    assert model_slug(" // ") == "model"


def test_rebuild_command_of_an_unknown_model_says_model(tmp_path: Path) -> None:
    assert rebuild_command(tmp_path / "x", None) == f"python -m emo_core build --model MODEL --cache-root {tmp_path}"


def _resealed(folder: Path, **changes: object) -> None:
    """Rewrite the cache's manifest with ``changes`` and a valid seal (what a careful forger, or an old writer, would leave)."""
    raw = json.loads((folder / "manifest.json").read_text())
    write_manifest(folder, Manifest(**{**raw, **changes, "sites": tuple(raw["sites"])}))


def test_every_library_that_differs_is_named(tmp_path: Path) -> None:
    # kills the mutated separator between the libraries that differ
    write_cache(tmp_path / "tiny", MANIFEST, TENSORS, {})
    _resealed(tmp_path / "tiny", libraries={"torch": "0.1", "transformers": "0.2"})
    installed = {library: installed_version(library) for library in ("torch", "transformers")}
    named = f"torch 0.1 (installed: {installed['torch']}), transformers 0.2 (installed: {installed['transformers']})"
    with pytest.raises(CacheError, match=re.escape(f"was built with {named}, and loads only with the same versions")):
        read_cache(tmp_path / "tiny")


def test_a_manifest_without_the_tensors_names_the_models_rebuild(tmp_path: Path) -> None:
    # kills the rebuild command losing its model (MODEL instead of tiny/model)
    write_cache(tmp_path / "tiny", MANIFEST, TENSORS, {})
    _resealed(tmp_path / "tiny", files={})
    with pytest.raises(CacheError, match=re.escape("rebuild it with `python -m emo_core build --model tiny/model --cache-root")):
        read_cache(tmp_path / "tiny")


def test_a_sealed_manifest_missing_a_field_is_refused_with_the_rebuild(tmp_path: Path) -> None:
    # kills every mutant of that refusal (folder, model or message lost)
    folder = tmp_path / "tiny"
    write_cache(folder, MANIFEST, TENSORS, {})
    raw = json.loads((folder / "manifest.json").read_text())
    del raw["dtype"], raw["seal"]
    raw["seal"] = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()  # the seal's documented rule
    (folder / "manifest.json").write_text(json.dumps(raw))
    message = (
        f"The cache at {folder} has a manifest without the fields of format version {FORMAT_VERSION}; "
        f"rebuild it with `python -m emo_core build --model tiny/model --cache-root {tmp_path}`."
    )
    with pytest.raises(CacheError, match=f"^{re.escape(message)}$"):
        read_cache(folder)


def test_a_garbled_manifest_names_the_expected_models_rebuild(tmp_path: Path) -> None:
    # kills the rebuild command losing the caller's model when the manifest cannot be read
    folder = tmp_path / "tiny"
    write_cache(folder, MANIFEST, TENSORS, {})
    (folder / "manifest.json").write_text("[not, an, object")
    with pytest.raises(CacheError, match=re.escape("is not a JSON object); rebuild it with `python -m emo_core build --model tiny/model")):
        read_cache(folder, model_id="tiny/model")
