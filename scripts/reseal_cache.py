"""Developer tool: migrate a cache written by format version 1 (unsealed manifest) to the current format.

Usage::

    .venv/bin/python -m scripts.reseal_cache cached_activations/SmolLM2-135M-Instruct

Version 1 manifests have no seal, record no torch version and no skeleton count. This rewrites only
``manifest.json`` (tensors, tables and ``report.json`` stay as they are), and only after checking that
every file still has the checksum its old manifest records, that the prompt set is the current
training set (``--skeletons N`` for a cache built from the first N skeletons), and that the recorded
transformers version is the installed one. It then records this environment's library versions, so
run it only on a cache built in this environment. A cache already in the current format is only checked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emo_core.results import load_results
from emo_core.scenarios import emotion_prompts, prompt_set_hash, training_skeletons
from emo_core.store import FORMAT_VERSION, MANIFEST, CacheError, Manifest, file_checksum, installed_version, write_manifest


def reseal(folder: Path, skeletons: int | None) -> str:
    """Upgrade ``folder``'s version 1 manifest to a sealed current one; returns what was done (raises ``CacheError`` if unsafe)."""
    raw = json.loads((folder / MANIFEST).read_text())
    if raw.get("format_version") == FORMAT_VERSION:
        load_results(raw["model_id"], folder.parent)
        return f"{folder} is already in format version {FORMAT_VERSION} and loads."
    if raw.get("format_version") != 1:
        raise CacheError(f"{folder} has format version {raw.get('format_version')}; only version 1 can be resealed.")
    for name, expected in raw["files"].items():
        if not (folder / name).is_file() or file_checksum(folder / name) != expected:
            raise CacheError(f"{folder / name} does not match its old manifest; rebuild the cache instead.")
    expected_hash = prompt_set_hash(emotion_prompts(training_skeletons(skeletons)))
    if raw["prompt_set_hash"] != expected_hash:
        raise CacheError(f"{folder} was built from another prompt set than the current training scenarios; rebuild it instead.")
    if raw["transformers_version"] != installed_version("transformers"):
        raise CacheError(f"{folder} was built with transformers {raw['transformers_version']}; rebuild it instead.")
    fields = {key: raw[key] for key in ("model_id", "model_type", "shape", "prompt_set_hash", "dtype", "files")}
    write_manifest(folder, Manifest(**fields, sites=tuple(raw["sites"]), skeletons=skeletons))
    load_results(raw["model_id"], folder.parent)
    return f"Resealed {folder} as format version {FORMAT_VERSION}; it loads."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a cache folder, e.g. cached_activations/SmolLM2-135M-Instruct")
    parser.add_argument("--skeletons", type=int, default=None, help="the build's skeleton count, if it used only the first N")
    args = parser.parse_args()
    try:
        print(reseal(args.folder, args.skeletons))
    except (CacheError, OSError, KeyError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
