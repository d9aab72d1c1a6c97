"""Tiny random models of every supported family, built from configs (no downloads)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
    Qwen3Config,
)

import emo_core as ec
from emo_core.interventions import HeadAblation, NeuronAblation
from emo_core.parts import Component
from emo_core.results import Results, load_results
from emo_core.scoring import SCORING_SETTINGS, Row

os.environ.setdefault("EMO_PRELOAD_MODEL", "0")  # no app started by a test loads the model in the background
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")  # UMAP on a tiny build: 2 s as plain Python, 30 s of numba compiling per process

VOCAB = 49152  # the embedded tokenizer's size, so tiny models can share it
_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    initializer_range=0.4,
)

FAMILY_CONFIGS: dict[str, PretrainedConfig] = {
    "llama": LlamaConfig(**_COMMON),
    "mistral": MistralConfig(**_COMMON),
    "qwen2": Qwen2Config(**_COMMON),
    "qwen3": Qwen3Config(**_COMMON, head_dim=8),
    "gemma": GemmaConfig(**_COMMON, head_dim=16),  # heads x head_dim != hidden, as in gemma-7b
    "gemma2": Gemma2Config(**_COMMON, head_dim=16),
    "gpt2": GPT2Config(vocab_size=VOCAB, n_embd=32, n_inner=48, n_layer=3, n_head=4, initializer_range=0.4),
}
FAMILIES = sorted(FAMILY_CONFIGS)


@pytest.fixture(scope="session")
def embedded() -> ec.ModelBundle:
    """The embedded SmolLM2 model (loads from the user cache after the first run)."""
    return ec.load_model("default")


@pytest.fixture(scope="session")
def tiny_llama(embedded: ec.ModelBundle) -> ec.ModelBundle:
    """A tiny random Llama in float32 with the embedded tokenizer (the knockout and comparison tests run on it)."""
    return ec.bundle_from(tiny_model("llama").float(), embedded.tokenizer, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_results(tiny_llama: ec.ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Results:
    """A synthetic cache shaped like ``tiny_llama``, loaded as the app loads one."""
    from tests.synthetic_cache import write_synthetic_cache

    root = tmp_path_factory.mktemp("tiny_cache")
    write_synthetic_cache(root, "tiny-llama", shape={**vars(tiny_llama.shape)})
    return load_results("tiny-llama", root)


# Eager attention (Gemma2's only kind) turns fully padded rows into NaN in float64, so Gemma2 runs in float32.
FAMILY_DTYPES = {"gemma2": torch.float32}


def tiny_model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(FAMILY_CONFIGS[family])
    return model.to(FAMILY_DTYPES.get(family, torch.float64)).eval()


@contextmanager
def pushed(bundle: ec.ModelBundle, pieces: list[list[int]]) -> Iterator[None]:
    """While open, row ``r`` of every batch writes the tokens ``pieces[r]`` over and over (a hook raises the next one's
    logit); the hook is removed on leaving."""

    def push(module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        last = kwargs["input_ids"][:, -1]
        for row, token in enumerate(last.tolist()):
            mine = pieces[row]
            following = mine[(mine.index(token) + 1) % len(mine)] if token in mine else mine[0]
            output.logits[row, -1, following] += 100.0

    handle = bundle.model.register_forward_hook(push, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def made_up_tokens(row: Row) -> tuple[int, ...]:
    """A made-up reply for a row, different for every prompt, emotion and set of edits (code that reads replies back
    reads whatever was said)."""
    key = zlib.crc32(f"{row.prompt}|{row.emotion}|{row.interventions!r}".encode())
    return tuple(100 + (key >> shift) % 5000 for shift in range(0, 3 + key % 3))


class FakeGenerate:
    """Stands in for ``scoring.generate_rows``: checks it is handed ``bundle`` and the scoring settings, records each call
    (its rows and description), reports the call's rows to its progress, and answers every row with ``made_up_tokens``."""

    def __init__(self, bundle: ec.ModelBundle) -> None:
        self.bundle = bundle
        self.calls: list[tuple[list[Row], str]] = []

    def __call__(self, bundle, rows, settings=None, progress=None, desc="replies", **_):
        assert bundle is self.bundle and settings == SCORING_SETTINGS
        self.calls.append((list(rows), desc))
        if progress is not None:
            progress(len(rows), len(rows))
        return [ec.Reply(f"reply {i}", made_up_tokens(row), 5) for i, row in enumerate(rows)]


def switched_off(row: object) -> set[Component]:
    """The heads and neurons a row's ablations switch off (its other edits, such as steering, left aside)."""
    off = set()
    for edit in row.interventions:
        if isinstance(edit, HeadAblation):
            off |= {Component("head", layer, index) for layer, index in edit.heads}
        if isinstance(edit, NeuronAblation):
            off |= {Component("neuron", layer, index) for layer, index in edit.neurons}
    return off


def exact(bundle: ec.ModelBundle) -> float:
    """Absolute tolerance for identities that hold exactly up to the model dtype's rounding."""
    return 1e-12 if bundle.dtype == torch.float64 else 1e-5


def last_token_states(bundle: ec.ModelBundle, prompts: list[str], edits: list, layers: list[int] | tuple[int, ...]) -> torch.Tensor:
    """The reference: one ordinary batched forward pass; ``resid_post`` at each row's last prompt token, ``[rows, len(layers), d]``."""
    batch = ec.generation.encode(bundle, prompts)
    last = torch.full((len(prompts),), batch["input_ids"].shape[1] - 1)
    with torch.inference_mode(), ec.intervene(bundle, *edits), ec.capture(bundle, ["resid_post"], layers=layers, positions=last) as seen:
        bundle.model(**batch)
    return torch.stack([seen[("resid_post", layer)] for layer in layers], dim=1)


@pytest.fixture(scope="session", params=FAMILIES)
def tiny(request: pytest.FixtureRequest, embedded: ec.ModelBundle) -> ec.ModelBundle:
    """A tiny model of each family (float64 where possible) with the embedded tokenizer."""
    return ec.bundle_from(tiny_model(request.param), embedded.tokenizer, name=f"tiny-{request.param}")


@pytest.fixture
def input_ids() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(0, VOCAB, (2, 7))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served on a free port, one per test process for its browser tests (the shipped cache, or a synthetic one; never the Hub)."""
    from tests.live_app import server_env, start_server, stop_server  # imports streamlit: only browser tests pay for it

    process, url = start_server(server_env(tmp_path_factory.mktemp("results")))
    try:
        yield url
    finally:
        stop_server(process)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (files keep their order): `make test` hands whole files to a worker per core, so the quick
    tests then fill in behind the browser and build files instead of those running last, alone on one core."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
