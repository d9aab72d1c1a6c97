"""The cache format: round trip, and a clear refusal (naming what differs and the rebuild) of any cache that is not exactly ours."""

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from emo_core import store
from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import load_results
from emo_core.store import (
    CACHE_ROOT,
    FORMAT_VERSION,
    LIBRARIES,
    MANIFEST,
    TENSORS,
    CacheError,
    Manifest,
    file_checksum,
    installed_version,
    model_slug,
    read_cache,
    read_manifest,
    rebuild_command,
    write_cache,
    write_manifest,
)
from tests.synthetic_cache import write_synthetic_cache

TABLE = "top_heads.parquet"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    manifest = Manifest("tiny/model", "llama", {"n_layers": 3}, "abc123", ("resid_mid", "resid_post"), "float32")
    tensors = {"directions.resid_post": torch.arange(12.0).reshape(2, 6)}
    tables = {"top_heads": pd.DataFrame({"layer": [1, 2], "head": [0, 3], "score": [0.5, 0.25]})}
    write_cache(folder, manifest, tensors, tables)
    return folder


def _rebuild(folder: Path) -> str:
    return f"`python -m emo_core build --model tiny/model --cache-root {folder.parent}`"


def test_round_trip(cache_dir: Path) -> None:
    cache = read_cache(cache_dir, model_id="tiny/model", prompt_set_hash="abc123")
    assert torch.equal(cache.tensors["directions.resid_post"], torch.arange(12.0).reshape(2, 6))
    assert cache.tables["top_heads"]["head"].tolist() == [0, 3]
    assert cache.manifest.sites == ("resid_mid", "resid_post") and cache.manifest.format_version == FORMAT_VERSION
    assert cache.manifest.libraries == {library: installed_version(library) for library in LIBRARIES}
    assert set(cache.manifest.files) == {TENSORS, TABLE} and len(cache.manifest.seal) == 64
    assert not list(cache_dir.parent.glob("*.partial")) and not list(cache_dir.glob("*.partial"))


def test_other_model_or_prompt_set_is_refused_with_the_rebuild_command(cache_dir: Path) -> None:
    with pytest.raises(CacheError, match="built for 'tiny/model', not 'other'") as error:
        read_cache(cache_dir, model_id="other")
    assert "python -m emo_core build --model other" in str(error.value)
    with pytest.raises(CacheError, match=r"different prompt set \(hash abc123; the current scenarios give zzz\)") as error:
        read_cache(cache_dir, prompt_set_hash="zzz")
    assert _rebuild(cache_dir) in str(error.value)


@pytest.mark.parametrize("found", [FORMAT_VERSION - 1, FORMAT_VERSION + 1, 0, "2"])
def test_only_exactly_this_format_version_loads(cache_dir: Path, found: object) -> None:
    write_manifest(cache_dir, replace(read_manifest(cache_dir), format_version=found))  # sealed, so only the version differs
    with pytest.raises(CacheError, match=f"has format version {found}, but this app reads exactly version {FORMAT_VERSION}") as error:
        read_cache(cache_dir, model_id="tiny/model")
    assert _rebuild(cache_dir) in str(error.value)


@pytest.mark.parametrize("library", LIBRARIES)
def test_other_library_versions_are_refused(cache_dir: Path, library: str) -> None:
    manifest = read_manifest(cache_dir)
    write_manifest(cache_dir, replace(manifest, libraries={**manifest.libraries, library: "0.0.1"}))
    with pytest.raises(CacheError, match=rf"built with {library} 0\.0\.1 \(installed: {installed_version(library)}\)") as error:
        read_cache(cache_dir, model_id="tiny/model")
    assert _rebuild(cache_dir) in str(error.value)
    write_manifest(cache_dir, replace(manifest, libraries={name: v for name, v in manifest.libraries.items() if name != library}))
    with pytest.raises(CacheError, match=rf"built with {library} unknown"):
        read_cache(cache_dir)


def _swap_for_valid_file(path: Path) -> None:
    """Replace a cache file by a well-formed file of the same kind with other content (only its checksum can tell)."""
    if path.suffix == ".parquet":
        pd.DataFrame({"layer": [9, 9], "head": [9, 9], "score": [9.0, 9.0]}).to_parquet(path, index=False)
    else:
        from safetensors.torch import save_file

        save_file({"directions.resid_post": torch.zeros(2, 6)}, path)


@pytest.mark.parametrize("name", [TENSORS, TABLE])
@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "swap"])
def test_every_damaged_or_swapped_file_is_refused(cache_dir: Path, name: str, damage: str) -> None:
    path = cache_dir / name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "delete":
        path.unlink()
    else:
        _swap_for_valid_file(path)
    with pytest.raises(CacheError, match=f"cache file {path} is missing or damaged") as error:
        read_cache(cache_dir)
    assert _rebuild(cache_dir) in str(error.value)


@pytest.mark.parametrize("name", [TENSORS, TABLE])
def test_an_entry_removed_from_the_manifest_is_refused(cache_dir: Path, name: str) -> None:
    """Dropping a file's entry so that a swapped file goes unchecked breaks the manifest's seal."""
    raw = json.loads((cache_dir / MANIFEST).read_text())
    del raw["files"][name]
    (cache_dir / MANIFEST).write_text(json.dumps(raw, indent=2))
    _swap_for_valid_file(cache_dir / name)
    with pytest.raises(CacheError, match="edited or damaged after it was written") as error:
        read_cache(cache_dir)
    assert _rebuild(cache_dir) in str(error.value)


@pytest.mark.parametrize(("key", "value"), [("model_id", "tiny/other"), ("prompt_set_hash", "fff"), ("skeletons", 3), ("seal", "0" * 64)])
def test_any_edit_of_the_manifest_breaks_its_seal(cache_dir: Path, key: str, value: object) -> None:
    raw = json.loads((cache_dir / MANIFEST).read_text())
    (cache_dir / MANIFEST).write_text(json.dumps({**raw, key: value}))
    with pytest.raises(CacheError, match="fails its seal"):
        read_manifest(cache_dir)


def test_a_resealed_manifest_must_still_list_the_tensors(cache_dir: Path) -> None:
    manifest = read_manifest(cache_dir)
    write_manifest(cache_dir, replace(manifest, files={TABLE: manifest.files[TABLE]}))
    with pytest.raises(CacheError, match=f"does not list {TENSORS}"):
        read_cache(cache_dir)


def test_missing_or_garbled_manifest(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(CacheError, match="No cache at .*; build one with `python -m emo_core build --model tiny/model"):
        read_cache(tmp_path / "nothing", model_id="tiny/model")
    for garbled in ("{not json", "[1, 2]", json.dumps({"format_version": FORMAT_VERSION})):
        (cache_dir / MANIFEST).write_text(garbled)
        with pytest.raises(CacheError, match="damaged manifest|format version|fails its seal"):
            read_cache(cache_dir)


def test_rebuild_command_names_the_model_and_a_non_default_root(tmp_path: Path) -> None:
    assert rebuild_command(CACHE_ROOT / "SmolLM2-135M-Instruct", EMBEDDED_NAME) == "python -m emo_core build --model default"
    assert rebuild_command(tmp_path / "x", "my org/model") == f"python -m emo_core build --model 'my org/model' --cache-root {tmp_path}"


def test_model_slug() -> None:
    assert model_slug("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen--Qwen2.5-0.5B-Instruct"
    assert model_slug("/home/me/models/llama 3/") == "home--me--models--llama--3"


def test_load_results_checks_the_prompt_set_against_the_current_training_scenarios(tmp_path: Path) -> None:
    folder = write_synthetic_cache(tmp_path, "synthetic/model", n_skeletons=2)
    results = load_results("synthetic/model", tmp_path)
    assert len(results.table("prompts")) == 2 * 3 * 6
    command = f"python -m emo_core build --model synthetic/model --cache-root {tmp_path}"
    with pytest.raises(CacheError, match=f"has no 'nope'; rebuild it with `{command}`"):
        results.tensor("nope")
    manifest = read_manifest(folder)
    write_manifest(folder, replace(manifest, skeletons=3))  # the hash of 2 skeletons no longer matches the claimed set
    with pytest.raises(CacheError, match="different prompt set") as error:
        load_results("synthetic/model", tmp_path)
    assert command in str(error.value)


@pytest.mark.skipif(not (CACHE_ROOT / model_slug(EMBEDDED_NAME)).is_dir(), reason="no shipped cache in this checkout")
def test_the_shipped_cache_loads() -> None:
    """After a format change, the shipped cache is rebuilt (``python -m emo_core build`` and ``evaluate``)."""
    assert load_results(EMBEDDED_NAME).cache.manifest.skeletons is None


def test_the_seal_ignores_the_manifest_files_layout(cache_dir: Path) -> None:
    raw = json.loads((cache_dir / MANIFEST).read_text())
    (cache_dir / MANIFEST).write_text(json.dumps(dict(reversed(raw.items()))))  # same content, other key order and spacing
    assert read_cache(cache_dir).manifest == read_manifest(cache_dir)


def test_a_checksummed_but_unreadable_file_is_refused(cache_dir: Path) -> None:
    (cache_dir / TENSORS).write_bytes(b"not a safetensors file")
    manifest = read_manifest(cache_dir)
    write_manifest(cache_dir, replace(manifest, files={**manifest.files, TENSORS: file_checksum(cache_dir / TENSORS)}))
    with pytest.raises(CacheError, match="could not be read; rebuild it with `python -m emo_core build --model tiny/model"):
        read_cache(cache_dir)


def test_installed_versions_drop_the_local_build_label(monkeypatch: pytest.MonkeyPatch) -> None:
    assert installed_version("no-such-package-for-emo-core") == "none"
    monkeypatch.setattr(store, "version", lambda library: "2.13.0+cpu")
    assert installed_version("torch") == "2.13.0"
