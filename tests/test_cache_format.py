"""The cache format is described once, in ``cached_activations/README.md``; these tests hold that page to the shipped cache."""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import fields
from pathlib import Path

import pytest

from emo_core.baselines import CAUSAL_KINDS
from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import Results, load_results
from emo_core.store import CACHE_ROOT, FORMAT_VERSION, MANIFEST, Manifest

FORMAT_PAGE = CACHE_ROOT / "README.md"
ROW = re.compile(r"^\| `([^`]+)` \| (.+?) \|(?: .* \|)?$")


def _rows(section: str) -> dict[str, str]:
    """The ``| `name` | second cell |`` rows of one ``## section`` of the format page."""
    text = FORMAT_PAGE.read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return {match[1]: match[2] for line in body.splitlines() if (match := ROW.match(line.strip()))}


@pytest.fixture(scope="module")
def shipped() -> Results:
    return load_results(EMBEDDED_NAME)


def _size(factor: str, sizes: dict[str, int]) -> int:
    """One factor of a documented dimension: a number, a size's name, or a number before a name (``2L``)."""
    number, name = re.fullmatch(r"([0-9]*)([A-Za-z_]*)", factor).groups()
    return (int(number) if number else 1) * (sizes[name] if name else 1)


def _expected_shape(shape: str, kind: str, results: Results, sizes: dict[str, int]) -> tuple[int, ...]:
    """A documented shape such as ``[E, 2L, H*D]`` in numbers; ``units`` is the width of ``kind``."""
    names = {**sizes, "units": {"heads": results.shape["n_heads"], "neurons": results.shape["d_mlp"]}.get(kind, 0)}
    dims = shape.strip("`[]").split(",")
    return tuple(math.prod(_size(factor.strip(), names) for factor in dim.split("*")) for dim in dims)


def test_every_documented_tensor_is_in_the_shipped_cache_with_its_shape_and_nothing_else(shipped: Results) -> None:
    shape = shipped.shape
    sizes = {
        "E": 6,
        "L": shape["n_layers"],
        "H": shape["n_heads"],
        "D": shape["head_dim"],
        "d_model": shape["d_model"],
        "d_mlp": shape["d_mlp"],
        "N": len(shipped.table("prompts")),
        "R": len(shipped.array("reading.layers")),
        "K": shipped.array("corpus.top_index").shape[-1],
    }
    documented: dict[str, tuple[int, ...]] = {}
    for pattern, cell in _rows("tensors.safetensors").items():
        for baseline, kind, mode in itertools.product(CAUSAL_KINDS, ("heads", "neurons"), ("zero", "mean")):
            name = pattern.format(baseline=baseline, kind=kind, mode=mode)
            documented[name] = _expected_shape(cell, kind, shipped, sizes)
    stored = {name: tuple(array.shape) for name, array in shipped.cache.arrays.items()}
    assert set(documented) == set(stored), f"undocumented: {set(stored) - set(documented)}, missing: {set(documented) - set(stored)}"
    wrong = {name: (documented[name], stored[name]) for name in stored if documented[name] != stored[name]}
    assert not wrong, f"documented shape != stored shape: {wrong}"


def test_every_documented_table_has_its_columns(shipped: Results) -> None:
    tables = _rows("Tables (parquet)")
    assert set(tables) == set(shipped.cache.tables)
    for name, cell in tables.items():
        assert re.findall(r"`([^`]+)`", cell) == list(shipped.table(name).columns), name


def test_the_manifest_fields_are_the_documented_ones() -> None:
    documented = set(_rows("manifest.json"))
    on_disk = json.loads((Path(CACHE_ROOT) / "SmolLM2-135M-Instruct" / MANIFEST).read_text())
    assert documented == set(on_disk) == {field.name for field in fields(Manifest)}
    assert on_disk["format_version"] == FORMAT_VERSION
