"""The cache format: a sealed, versioned manifest, tensors in safetensors, tables in parquet.

A cache folder (``cached_activations/<model-slug>/``) holds ``manifest.json``, ``tensors.safetensors``
and one ``<name>.parquet`` per table. The manifest records what the results were computed from
(model, architecture, prompt set, library versions, sites, dtype), the sha256 of every file, and a
seal: the sha256 of the manifest itself, so an edited manifest (say, an entry removed so that the
file it named can be swapped) is refused like a damaged file. A cache loads only when all of it
matches exactly; otherwise the error names what differs and the command that rebuilds it.
Nothing is ever unpickled. ``report.json`` (the evaluation, written later) is not part of it. The names and shapes of
what a cache holds are listed once, in ``cached_activations/README.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from emo_core.defaults import DEFAULT_MODEL, EMBEDDED_NAME
from emo_core.errors import EmoCoreError

if TYPE_CHECKING:
    import torch

# 2: sealed manifest, library versions, skeleton count; 3: circuit strengths tuned for the steering circuits;
# 4: the prepared knockouts' table, and no more diff vectors (nothing read them)
FORMAT_VERSION = 4
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
LIBRARIES = ("torch", "transformers")  # their versions change the numbers a cache holds
CACHE_ROOT = Path(__file__).resolve().parent.parent / "cached_activations"


class CacheError(EmoCoreError):
    """A cache is missing, from another model or version, or damaged."""


def installed_version(library: str) -> str:
    """The installed release of ``library`` without a local build label (``2.13.0+cpu`` is ``2.13.0``), or ``"none"``."""
    try:
        return version(library).split("+")[0]
    except PackageNotFoundError:
        return "none"


def installed_libraries() -> dict[str, str]:
    """The versions of ``LIBRARIES`` in this environment, as a manifest records them."""
    return {library: installed_version(library) for library in LIBRARIES}


@dataclass(frozen=True)
class Manifest:
    """What a cache was computed from, the checksum of each of its files, and the manifest's own seal."""

    model_id: str
    model_type: str
    shape: dict[str, int]
    prompt_set_hash: str
    sites: tuple[str, ...]
    dtype: str
    skeletons: int | None = None  # how many training skeletons the prompt set took; None: all
    libraries: dict[str, str] = field(default_factory=installed_libraries)
    format_version: int = FORMAT_VERSION
    files: dict[str, str] = field(default_factory=dict)
    seal: str = ""


@dataclass(frozen=True)
class Cache:
    """A loaded cache: its manifest, named arrays and named tables.

    The arrays are read as numpy, so a page that only shows saved results never imports torch (about 2 s of a
    cold start); ``tensors`` gives the same memory as torch tensors, for whatever computes with them.
    """

    manifest: Manifest
    arrays: dict[str, np.ndarray]
    tables: dict[str, pd.DataFrame]

    @cached_property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The arrays as torch tensors sharing their memory, made on first use."""
        import torch

        return {name: torch.from_numpy(array) for name, array in self.arrays.items()}


def model_slug(model_id: str) -> str:
    """A folder name for a model id or path: ``Qwen/Qwen2.5-0.5B`` becomes ``Qwen--Qwen2.5-0.5B``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model_id.strip().strip("/")) or "model"


def rebuild_command(folder: Path, model_id: str | None) -> str:
    """The command that writes a fresh cache into ``folder`` (``MODEL`` stands for an unknown model)."""
    source = DEFAULT_MODEL if model_id == EMBEDDED_NAME else (model_id or "MODEL")
    root = Path(folder).resolve().parent
    where = "" if root == CACHE_ROOT else f" --cache-root {shlex.quote(str(root))}"
    return f"python -m emo_core build --model {shlex.quote(source)}{where}"


def _refuse(folder: Path, model_id: str | None, what: str) -> CacheError:
    return CacheError(f"The cache at {folder} {what}; rebuild it with `{rebuild_command(folder, model_id)}`.")


def file_checksum(path: Path) -> str:
    """The sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _seal(raw: dict) -> str:
    """The sha256 of a manifest's content without its seal (keys sorted, so the layout of the file does not matter)."""
    body = {key: value for key, value in raw.items() if key != "seal"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_manifest(folder: Path, manifest: Manifest) -> Manifest:
    """Seal ``manifest`` and write it into ``folder`` atomically; returns the sealed manifest."""
    raw = json.loads(json.dumps(asdict(manifest)))
    raw["seal"] = _seal(raw)
    staging = Path(folder) / (MANIFEST + ".partial")
    staging.write_text(json.dumps(raw, indent=2))
    staging.replace(Path(folder) / MANIFEST)
    return Manifest(**{**raw, "sites": tuple(raw["sites"])})


def write_cache(folder: Path, manifest: Manifest, tensors: dict[str, torch.Tensor], tables: dict[str, pd.DataFrame]) -> Manifest:
    """Write a cache atomically (into a sibling folder, then renamed) and return its final manifest."""
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file({name: t.detach().cpu().contiguous().numpy() for name, t in tensors.items()}, staging / TENSORS)
    for name, table in tables.items():
        table.to_parquet(staging / f"{name}.parquet", index=False)
    files = {path.name: file_checksum(path) for path in sorted(staging.iterdir())}
    final = write_manifest(staging, Manifest(**{**asdict(manifest), "files": files, "sites": tuple(manifest.sites)}))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return final


def read_manifest(folder: Path, model_id: str | None = None) -> Manifest:
    """The manifest of a cache folder, checked for the exact format version and its seal.

    ``model_id`` (the model the caller expects, else the one the manifest names) only completes the rebuild command in errors.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise CacheError(f"No cache at {folder}; build one with `{rebuild_command(folder, model_id)}`.")
    try:
        raw = json.loads(path.read_text())
        found = raw.get("format_version")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise _refuse(folder, model_id, f"has a damaged manifest ({path} is not a JSON object)") from None
    model_id = model_id or (raw["model_id"] if isinstance(raw.get("model_id"), str) else None)  # for the rebuild command only
    if found != FORMAT_VERSION:
        raise _refuse(folder, model_id, f"has format version {found}, but this app reads exactly version {FORMAT_VERSION}")
    if raw.get("seal") != _seal(raw):
        raise _refuse(folder, model_id, f"has a manifest that was edited or damaged after it was written ({path} fails its seal)")
    try:
        return Manifest(**{**raw, "sites": tuple(raw["sites"])})
    except (TypeError, KeyError):
        raise _refuse(folder, model_id, f"has a manifest without the fields of format version {FORMAT_VERSION}") from None


def _check_identity(folder: Path, manifest: Manifest, model_id: str | None, prompt_set_hash: str | None) -> None:
    """Refuse a cache of another model, prompt set or library version, naming what differs."""
    rebuild_for = model_id or manifest.model_id
    if model_id is not None and manifest.model_id != model_id:
        raise _refuse(folder, rebuild_for, f"was built for '{manifest.model_id}', not '{model_id}'")
    if prompt_set_hash is not None and manifest.prompt_set_hash != prompt_set_hash:
        raise _refuse(
            folder,
            rebuild_for,
            f"was built from a different prompt set (hash {manifest.prompt_set_hash}; the current scenarios give {prompt_set_hash})",
        )
    differ = [
        f"{library} {manifest.libraries.get(library, 'unknown')} (installed: {installed_version(library)})"
        for library in sorted(set(LIBRARIES) | set(manifest.libraries))
        if manifest.libraries.get(library) != installed_version(library)
    ]
    if differ:
        raise _refuse(folder, rebuild_for, f"was built with {', '.join(differ)}, and loads only with the same versions")


def read_cache(folder: Path, model_id: str | None = None, prompt_set_hash: str | None = None) -> Cache:
    """Load a cache after checking it belongs to ``model_id`` / ``prompt_set_hash``, these library versions, and is intact."""
    folder = Path(folder)
    manifest = read_manifest(folder, model_id)
    _check_identity(folder, manifest, model_id, prompt_set_hash)
    rebuild_for = model_id or manifest.model_id
    if TENSORS not in manifest.files:
        raise _refuse(folder, rebuild_for, f"has a manifest that does not list {TENSORS}")
    for name, expected in manifest.files.items():
        path = folder / name
        if not path.is_file() or file_checksum(path) != expected:
            raise CacheError(
                f"The cache file {path} is missing or damaged (its checksum is not the manifest's); "
                f"rebuild the cache with `{rebuild_command(folder, rebuild_for)}`."
            )
    try:
        arrays = load_file(folder / TENSORS)
        tables = {name[: -len(".parquet")]: pd.read_parquet(folder / name) for name in manifest.files if name.endswith(".parquet")}
    except (SafetensorError, OSError, ValueError) as error:
        raise _refuse(folder, rebuild_for, "could not be read") from error
    return Cache(manifest, arrays, tables)
