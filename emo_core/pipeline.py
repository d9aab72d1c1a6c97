"""``build``: every result the app shows, computed for one model and written as its cache.

Stages, in order: activations of the training emotion prompts (resumable shards) → emotion directions,
cosines and cross-layer similarity → the paper's neuron and head scores → sublayer importance → cluster
separation and the 2-D maps (PCA, UMAP) → expression vectors and their scores → the second judge's corpus read by the
model (``corpus.py``: each neuron's top sentences per emotion, and the layer-by-layer reading calibrated on it) → the
circuit (in the most important sublayers, the heads and neurons that write the expressed emotion most) → direction-steering
strengths tuned on training prompts with the judge → the internal reading, calibrated → the parts' mean
outputs on neutral prompts → causal rankings (what switching each head and neuron off does to the emotion
reading and to the neutral loss, by attribution patching) → circuit-steering strengths for the steering
circuits those rankings give → the prepared knockouts (``prepared.py``: per emotion, the baseline and knockout that remove
the emotion from the words most against matched random sets). The evaluation skeletons are never read here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emo_core.activations import EXTRACT_SITES, extract, neutral_means
from emo_core.attribution import CausalSettings, causal_effects, training_openings
from emo_core.calibration import calibrate_reading
from emo_core.circuit import ATTN, MLP, select_circuit
from emo_core.components import head_importance, neuron_contributions
from emo_core.corpus import CORPUS_BATCH, TOP_K, corpus_tensors
from emo_core.directions import (
    between_emotion_cosines,
    complete_groups,
    cross_layer_similarity,
    emotion_directions,
    nearest_emotions,
)
from emo_core.expression import expression_scores, expression_vectors
from emo_core.importance import aligned_local_directions, reference_directions, sublayer_importance
from emo_core.judge import SECOND_JUDGE, load_judge
from emo_core.models import DType, ModelBundle, load_model
from emo_core.parts import NeutralMeans
from emo_core.prepared import PrepareSettings, causal_ranking, prepare_knockouts
from emo_core.progress import StageProgress, stage
from emo_core.projection import emotion_coordinates, pca_maps, umap_maps
from emo_core.results import CACHE_ROOT, cache_folder
from emo_core.scenarios import EMOTIONS, PromptSpec, Skeleton, emotion_prompts, neutral_prompts, prompt_set_hash, spread, training_skeletons
from emo_core.steering import SteeringKit
from emo_core.store import Manifest, write_cache
from emo_core.tuning import TUNING_PROMPTS, tune_steering


@dataclass(frozen=True)
class BuildSettings:
    """Sizes that trade build time for precision."""

    batch_size: int = 36  # whole groups of 3 valences per extraction batch, so each shares its prefix (``extract``)
    importance_prompts: int = 48
    umap_epochs: int = 200
    probe_folds: int = 4
    skeletons: int | None = None  # None: every training skeleton
    tuning_prompts: int = TUNING_PROMPTS
    mean_prompts: int = 96
    causal: CausalSettings = CausalSettings()
    prepare: PrepareSettings = PrepareSettings()
    corpus_batch: int = CORPUS_BATCH
    corpus_per_label: int | None = None  # None: the whole corpus; fewer sentences per label for a quick build
    corpus_top: int = TOP_K  # top sentences kept per neuron and emotion


def prompt_table(prompts: list[PromptSpec], skeletons: list[Skeleton]) -> pd.DataFrame:
    """One row per prompt with what the app shows on hover."""
    by_id = {s.skeleton_id: s for s in skeletons}
    return pd.DataFrame(
        {
            "key": [p.key for p in prompts],
            "skeleton_id": [p.skeleton_id for p in prompts],
            "theme": [p.theme for p in prompts],
            "valence": [p.valence for p in prompts],
            "emotion": [p.emotion for p in prompts],
            "scenario": [by_id[p.skeleton_id].scenario for p in prompts],
            "event": [by_id[p.skeleton_id].event[p.valence] for p in prompts],
        }
    )


def cluster_separation(
    acts: np.ndarray, coordinates: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, the silhouette of the emotion labels in the emotion coordinates (what the maps
    show), and a linear probe's accuracy on the raw states of held-out skeletons (grouped folds, so a
    skeleton is never in both train and test). The probe reads the top 32 principal components,
    which keeps it fast and hard to overfit."""
    silhouettes, probes = [], []
    for layer in range(acts.shape[1]):
        points = acts[:, layer]
        silhouettes.append(silhouette_score(coordinates[:, layer], labels))
        probe = make_pipeline(StandardScaler(), PCA(n_components=min(32, *points.shape), random_state=0), LogisticRegression(max_iter=500))
        probes.append(cross_val_score(probe, points, labels, groups=groups, cv=GroupKFold(n_splits=folds)).mean())
    return np.array(silhouettes, dtype=np.float32), np.array(probes, dtype=np.float32)


def component_scores(
    bundle: ModelBundle, prompts: list[PromptSpec], acts: dict, mid: torch.Tensor, post: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean head importance ``[E, L, H]`` and neuron contribution ``[E, L, d_mlp]`` over each emotion's prompts."""
    heads, neurons = [], []
    for e, emotion in enumerate(EMOTIONS):
        rows = torch.tensor([i for i, p in enumerate(prompts) if p.emotion == emotion])
        heads.append(head_importance(bundle, acts["resid_mid"][rows], acts["attn_z"][rows], mid[e]).mean(dim=0))
        neurons.append(neuron_contributions(bundle, acts["mlp_post"][rows], post[e]).mean(dim=0))
    return torch.stack(heads), torch.stack(neurons)


def circuit_table(importance: torch.Tensor, head_scores: torch.Tensor, neuron_scores: torch.Tensor) -> pd.DataFrame:
    """Every emotion's circuit as rows of (emotion, kind, layer, index, score, rank, sublayer_weight).

    ``importance`` picks the sublayers; ``head_scores`` and ``neuron_scores`` (``[E, L, ...]``) rank the members inside them.
    """
    rows = []
    for e, emotion in enumerate(EMOTIONS):
        circuit = select_circuit(emotion, importance[e], head_scores[e], neuron_scores[e])
        for kind, sublayer, members in (("head", ATTN, circuit.heads), ("neuron", MLP, circuit.neurons)):
            for rank, (layer, index, score) in enumerate(members):
                rows.append(
                    {
                        "emotion": emotion,
                        "kind": kind,
                        "layer": layer,
                        "index": index,
                        "score": score,
                        "rank": rank,
                        "sublayer_weight": circuit.weights[(sublayer, layer)],
                    }
                )
    return pd.DataFrame(rows)


def build(
    source: str = "default",
    *,
    root: Path = CACHE_ROOT,
    device: str = "cpu",
    dtype: DType = "float32",
    settings: BuildSettings = BuildSettings(),
    progress: StageProgress | None = None,
    bundle: ModelBundle | None = None,
    judge: str = "minilm",
) -> Path:
    """Compute and write the cache of ``source``; an interrupted build resumes from its shards.

    Returns the cache folder. ``progress`` receives ``(stage, done, total)``; without it, tqdm bars
    are shown.
    """
    bundle = bundle or load_model(source, dtype=dtype, device=device)
    folder = cache_folder(bundle.name, root)
    work = folder.with_name(folder.name + ".work")
    skeletons = training_skeletons(settings.skeletons)
    prompts = emotion_prompts(skeletons)
    neutral = neutral_prompts(skeletons)

    acts = extract(bundle, prompts, settings.batch_size, work / "emotion", stage(progress, "activations"))
    groups = complete_groups(prompts)
    mid, post = (emotion_directions(acts[site], groups) for site in ("resid_mid", "resid_post"))
    cosines = between_emotion_cosines(post)

    if progress is not None:
        progress("components", 0, 1)
    head_scores, neuron_scores = component_scores(bundle, prompts, acts, mid, post)

    reference = reference_directions(mid, post)
    importance = sublayer_importance(
        bundle,
        spread(neutral, settings.importance_prompts),
        reference,
        aligned_local_directions(mid, reference),
        aligned_local_directions(post, reference),
        progress=stage(progress, "sublayer importance"),
    )

    post_np = acts["resid_post"].numpy()
    labels = np.array([p.emotion for p in prompts])
    skeleton_ids = np.array([p.skeleton_id for p in prompts])
    if progress is not None:
        progress("separation", 0, 1)
    coordinates = emotion_coordinates(post_np, post.numpy())
    separation, probe_accuracy = cluster_separation(post_np, coordinates, labels, skeleton_ids, settings.probe_folds)
    pca = pca_maps(coordinates)
    umap = umap_maps(coordinates, n_epochs=settings.umap_epochs, progress=stage(progress, "umap"))

    tensors = {
        "directions.resid_mid": mid,
        "directions.resid_post": post,
        "cosines": cosines,
        "cross_layer": cross_layer_similarity(mid, post),
        "head_scores": head_scores,
        "neuron_scores": neuron_scores,
        "sublayer_importance": importance,
        "umap": torch.from_numpy(umap),
        "map.coordinates": torch.from_numpy(coordinates).transpose(0, 1).contiguous(),  # [L, N, E]: where new runs are placed
        "map.centre": torch.from_numpy(post_np.mean(axis=0)),  # [L, d_model]
        "pca": torch.from_numpy(pca),
        "separation": torch.from_numpy(separation),
        "probe_accuracy": torch.from_numpy(probe_accuracy),
    }
    expression = expression_vectors(bundle, progress=stage(progress, "expression"))
    tensors.update({f"expression.{site}": value for site, value in expression.items()})
    tensors["expression.head_scores"], tensors["expression.neuron_scores"] = expression_scores(bundle, expression)
    corpus, corpus_table = corpus_tensors(
        bundle,
        expression["resid_post"],
        per_label=settings.corpus_per_label,
        batch_size=settings.corpus_batch,
        k=settings.corpus_top,
        progress=stage(progress, "corpus"),
    )
    tensors.update(corpus)
    circuits = circuit_table(importance, tensors["expression.head_scores"], tensors["expression.neuron_scores"])
    emotion_judge, second_judge = load_judge(judge), load_judge(SECOND_JUDGE)

    def tune(kit: SteeringKit, method: str) -> pd.DataFrame:
        return tune_steering(
            kit,
            emotion_judge,
            skeletons,
            (method,),
            n_prompts=settings.tuning_prompts,
            progress=stage(progress, f"tuning: {method}"),
            second=second_judge,
        )

    kit = SteeringKit.from_tensors(bundle, tensors)  # directions only: the steering circuits come from the causal rankings
    direction = tune(kit, "direction")
    kit = kit.with_tuning(direction)
    reading = calibrate_reading(kit, spread(neutral, settings.tuning_prompts), progress=stage(progress, "reading"))
    tensors.update(reading.to_tensors())
    means = neutral_means(bundle, spread(neutral, settings.mean_prompts), settings.batch_size)
    tensors.update({f"means.{site}": value for site, value in means.items()})
    unit_means = NeutralMeans(means["attn_z"], means["mlp_post"])
    tensors.update(causal_effects(kit, reading, unit_means, neutral, training_openings(), settings.causal, progress))
    steering = pd.concat([direction, tune(SteeringKit.from_tensors(bundle, tensors), "circuit")], ignore_index=True)
    prepared = prepare_knockouts(
        SteeringKit.from_tensors(bundle, tensors, steering),
        emotion_judge,
        causal_ranking(tensors),
        unit_means,
        spread(neutral, settings.prepare.prompts),
        settings.prepare,
        stage(progress, "prepared knockouts"),
    )
    tables = {
        "prompts": prompt_table(prompts, skeletons),
        "circuit": circuits,
        "nearest": nearest_emotions(cosines),
        "steering": steering,
        "prepared": prepared,
        "corpus": corpus_table,
    }
    manifest = Manifest(
        model_id=bundle.name,
        model_type=bundle.model_type,
        shape=dict(vars(bundle.shape)),
        prompt_set_hash=prompt_set_hash(prompts),
        skeletons=settings.skeletons,
        sites=EXTRACT_SITES,
        dtype=str(bundle.dtype).removeprefix("torch."),
    )
    write_cache(folder, manifest, {name: t.float().contiguous() for name, t in tensors.items()}, tables)
    shutil.rmtree(work, ignore_errors=True)
    return folder
