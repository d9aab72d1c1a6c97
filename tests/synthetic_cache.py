"""A tiny synthetic results cache in the real format, for fast tests of the dashboard's helpers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from emo_core.baselines import CAUSAL_KINDS
from emo_core.causal import HARM_BASE, effect_name, harm_name
from emo_core.pipeline import prompt_table
from emo_core.results import Results, cache_folder, load_results
from emo_core.scenarios import EMOTIONS, emotion_prompts, prompt_set_hash, training_skeletons
from emo_core.store import Manifest, write_cache

SHAPE = {"n_layers": 4, "n_heads": 3, "head_dim": 2, "d_mlp": 8, "d_model": 6}
CORPUS_PER_LABEL = 5  # sentences per label of the synthetic corpus
CORPUS_TOP = 3  # top sentences per neuron and emotion


def _prompts(n_skeletons: int) -> tuple[pd.DataFrame, str]:
    """The prompts table of the first ``n_skeletons`` training skeletons, and that prompt set's hash (what caches are checked against)."""
    skeletons = training_skeletons(n_skeletons)
    prompts = emotion_prompts(skeletons)
    table = prompt_table(prompts, skeletons)
    return table, prompt_set_hash(prompts)


def write_synthetic_cache(root: Path, model_id: str, n_skeletons: int = 4, seed: int = 0, shape: dict[str, int] = SHAPE) -> Path:
    """Write a random but well-formed cache for ``model_id`` under ``root`` (tiny unless ``shape`` says otherwise); returns its folder."""
    gen = torch.Generator().manual_seed(seed)
    n_layers, n_heads, head_dim, d_mlp, d_model = (shape[k] for k in ("n_layers", "n_heads", "head_dim", "d_mlp", "d_model"))
    n_emotions = len(EMOTIONS)
    prompts, prompts_hash = _prompts(n_skeletons)
    n_points = len(prompts)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    directions = torch.nn.functional.normalize(rand(n_emotions, n_layers, d_model), dim=-1)
    cosines = torch.einsum("eld,fld->lef", directions, directions)
    positions = torch.nn.functional.normalize(rand(n_emotions, 2 * n_layers, d_model), dim=-1)
    tensors = {
        "directions.resid_mid": directions,
        "directions.resid_post": directions.clone(),
        "cosines": cosines,
        "cross_layer": torch.einsum("epd,eqd->epq", positions, positions),
        "head_scores": rand(n_emotions, n_layers, n_heads),
        "neuron_scores": rand(n_emotions, n_layers, d_mlp),
        "sublayer_importance": rand(n_emotions, n_layers, 2),
        "umap": rand(n_layers, n_points, 2),
        "pca": rand(n_layers, n_points, 2),
        "separation": torch.linspace(0.0, 0.5, n_layers),
        "probe_accuracy": torch.linspace(0.3, 0.9, n_layers),
        "expression.resid_post": rand(n_emotions, n_layers, d_model),
        "expression.attn_z": rand(n_emotions, n_layers, n_heads * head_dim),
        "expression.mlp_post": rand(n_emotions, n_layers, d_mlp),
        "reading.layers": torch.tensor([float(n_layers - 2)]),
        "reading.calibration": torch.stack([torch.zeros(n_emotions), torch.ones(n_emotions)]),
        "means.attn_z": rand(n_layers, n_heads * head_dim),
        "means.mlp_post": rand(n_layers, d_mlp),
        "map.coordinates": rand(n_layers, n_points, n_emotions),
        "map.centre": rand(n_layers, d_model),
    }
    for kind, width in (("head", n_heads), ("neuron", d_mlp)):
        for mode in ("zero", "mean"):
            tensors |= {effect_name(baseline, kind, mode): rand(n_emotions, n_layers, width) for baseline in CAUSAL_KINDS}
            tensors[harm_name(kind, mode)] = rand(n_layers, width) * 1e-3
    tensors[HARM_BASE] = torch.tensor([3.0])
    # optional entries (a cache may predate them), drawn last so that the other tensors' values do not depend on them
    corpus = pd.DataFrame(
        {
            "text": [f"A made-up {label} sentence, number {i}." for label in (*EMOTIONS, "neutral") for i in range(CORPUS_PER_LABEL)],
            "label": [label for label in (*EMOTIONS, "neutral") for _ in range(CORPUS_PER_LABEL)],
        }
    )
    own = torch.arange(n_emotions)[:, None] * CORPUS_PER_LABEL  # each emotion's first sentence
    picks = torch.stack([torch.randperm(CORPUS_PER_LABEL, generator=gen)[:CORPUS_TOP] for _ in range(n_emotions * n_layers * d_mlp)])
    tensors["corpus.top_index"] = (own[:, :, None, None] + picks.view(n_emotions, n_layers, d_mlp, CORPUS_TOP)).float()
    tensors["corpus.top_value"] = rand(n_emotions, n_layers, d_mlp, CORPUS_TOP).abs().sort(dim=-1, descending=True).values
    tensors["layer_reading.calibration"] = torch.stack([rand(n_layers, n_emotions) * 0.1, 1.0 + rand(n_layers, n_emotions).abs()])
    tensors["layer_reading.auc"] = torch.rand(n_layers, n_emotions, generator=gen) * 0.5 + 0.5
    nearest = []
    for layer in range(n_layers):
        for e, emotion in enumerate(EMOTIONS):
            row = cosines[layer, e].clone()
            row[e] = -2.0
            other = int(row.argmax())
            nearest.append({"layer": layer, "emotion": emotion, "nearest": EMOTIONS[other], "cosine": float(row[other])})
    circuit = [
        {"emotion": emotion, "kind": kind, "layer": layer, "index": 1, "score": 0.5, "rank": rank, "sublayer_weight": 1.0}
        for emotion in EMOTIONS
        for rank, (kind, layer) in enumerate((("head", 1), ("neuron", 2)))
    ]
    steering = [
        {"method": method, "emotion": emotion, "layers": "1,2" if method == "direction" else "", "strength": 1.0}
        for method in ("direction", "circuit")
        for emotion in EMOTIONS
    ]
    prepared = [
        {
            "emotion": emotion,
            "method": "direction",
            "factor": 1.0,
            "strength": 1.0,
            "heads": 1,
            "neurons": 2,
            "mode": "mean",
            "parts": "L1H0 L2N3 L2N5",
            "prompts": 16,
            "carried": 12,
            "removed": 0.75,
            "random_removed": 0.08,
            "degenerate": 0.0,
            "random_degenerate": 0.0,
            "baseline_degenerate": 0.0,
            "score": 0.67,
        }
        for emotion in EMOTIONS
    ]
    tables = {
        "prompts": prompts,
        "prepared": pd.DataFrame(prepared),
        "nearest": pd.DataFrame(nearest),
        "circuit": pd.DataFrame(circuit),
        "steering": pd.DataFrame(steering),
        "corpus": corpus,
    }
    manifest = Manifest(
        model_id=model_id,
        model_type="llama",
        shape=dict(shape),
        prompt_set_hash=prompts_hash,
        sites=("resid_post",),
        dtype="float32",
        skeletons=n_skeletons,
    )
    folder = cache_folder(model_id, root)
    write_cache(folder, manifest, tensors, tables)
    return folder


def synthetic_results(root: Path, model_id: str = "synthetic-model") -> Results:
    """A synthetic cache for ``model_id`` written under ``root`` and loaded as the app loads one."""
    write_synthetic_cache(root, model_id)
    return load_results(model_id, root)
