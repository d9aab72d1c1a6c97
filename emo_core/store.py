"""The cache format: a versioned manifest, tensors in safetensors, tables in parquet.

A cache folder (``cached_activations/<model-slug>/``) holds ``manifest.json``, ``tensors.safetensors``
and one ``<name>.parquet`` per table. The manifest records what the results were computed from
(model, architecture, library versions, prompt-set hash, sites, dtype) and the sha256 of every
file, so a cache from another model or version, or a truncated or edited file, is refused with a
clear message instead of being used. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from emo_core.errors import EmoCoreError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"


class CacheError(EmoCoreError):
    """A cache is missing, from another model or version, or damaged."""


@dataclass(frozen=True)
class Manifest:
    """What a cache was computed from, and the checksum of each of its files."""

    model_id: str
    model_type: str
    shape: dict[str, int]
    prompt_set_hash: str
    sites: tuple[str, ...]
    dtype: str
    transformers_version: str = field(default_factory=lambda: version("transformers"))
    format_version: int = FORMAT_VERSION
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Cache:
    """A loaded cache: its manifest, named tensors and named tables."""

    manifest: Manifest
    tensors: dict[str, torch.Tensor]
    tables: dict[str, pd.DataFrame]


def model_slug(model_id: str) -> str:
    """A folder name for a model id or path: ``Qwen/Qwen2.5-0.5B`` becomes ``Qwen--Qwen2.5-0.5B``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model_id.strip().strip("/")) or "model"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_cache(folder: Path, manifest: Manifest, tensors: dict[str, torch.Tensor], tables: dict[str, pd.DataFrame]) -> Manifest:
    """Write a cache atomically (into a sibling folder, then renamed) and return its final manifest."""
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, staging / TENSORS)
    for name, table in tables.items():
        table.to_parquet(staging / f"{name}.parquet", index=False)
    files = {path.name: _sha256(path) for path in sorted(staging.iterdir())}
    final = Manifest(**{**asdict(manifest), "files": files, "sites": tuple(manifest.sites)})
    (staging / MANIFEST).write_text(json.dumps(asdict(final), indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return final


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a cache folder, checked for the format version."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CacheError(f"No cache at {folder}; build one with `python -m emo_core build`.")
    try:
        raw = json.loads(path.read_text())
        manifest = Manifest(**{**raw, "sites": tuple(raw["sites"])})
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise CacheError(f"The cache manifest {path} is damaged; rebuild the cache with `python -m emo_core build`.") from error
    if manifest.format_version != FORMAT_VERSION:
        raise CacheError(
            f"The cache at {folder} has format version {manifest.format_version}, but this app reads version "
            f"{FORMAT_VERSION}; rebuild it with `python -m emo_core build`."
        )
    return manifest


def read_cache(folder: Path, model_id: str | None = None, prompt_set_hash: str | None = None) -> Cache:
    """Load a cache after checking it belongs to ``model_id`` / ``prompt_set_hash`` and is intact."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if model_id is not None and manifest.model_id != model_id:
        raise CacheError(f"The cache at {folder} was built for '{manifest.model_id}', not '{model_id}'.")
    if prompt_set_hash is not None and manifest.prompt_set_hash != prompt_set_hash:
        raise CacheError(f"The cache at {folder} was built from a different prompt set; rebuild it with `python -m emo_core build`.")
    for name, expected in manifest.files.items():
        path = folder / name
        if not path.is_file() or _sha256(path) != expected:
            raise CacheError(f"The cache file {path} is missing or damaged; rebuild the cache with `python -m emo_core build`.")
    try:
        tensors = load_file(folder / TENSORS)
        tables = {name[: -len(".parquet")]: pd.read_parquet(folder / name) for name in manifest.files if name.endswith(".parquet")}
    except (SafetensorError, OSError, ValueError) as error:
        raise CacheError(f"The cache at {folder} could not be read; rebuild it with `python -m emo_core build`.") from error
    return Cache(manifest, tensors, tables)
