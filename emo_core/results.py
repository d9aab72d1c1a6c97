"""The pipeline's results for one model, read from its cache: what the app's pages show.

``Results`` gives named access to a cache's tensors and tables (their names and shapes are listed once, in
``cached_activations/README.md``) and to ``report.json`` beside them, when the evaluation has run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from emo_core.baselines import CAUSAL_KINDS
from emo_core.causal import HARM_BASE, causal_scores, effect_name, harm_name, others_mean, ranking_table
from emo_core.circuit import Circuit, circuit_from_table
from emo_core.parts import KINDS, Component, Kind, NeutralMeans, Ranked, circuit_components, top_indices, top_parts
from emo_core.placement import place_on_map
from emo_core.scenarios import EMOTIONS, emotion_prompts, prompt_set_hash, training_skeletons
from emo_core.store import CACHE_ROOT, Cache, CacheError, model_slug, read_cache, read_manifest, rebuild_command

if TYPE_CHECKING:
    import torch

    from emo_core.models import ModelBundle
    from emo_core.prepared import PreparedKnockout
    from emo_core.reading import EmotionReading, LayerReading
    from emo_core.steering import SteeringKit

REPORT = "report.json"
CORPUS_TENSORS = ("corpus.top_index", "corpus.top_value", "layer_reading.calibration", "layer_reading.auc")  # written by ``corpus.py``


@dataclass(frozen=True)
class Results:
    """A loaded cache with named accessors; every array is on the CPU.

    Showing saved results needs numpy and pandas only (``array``, the tables, the maps); torch is imported by the first
    accessor that computes (``tensor``), so the first page of a cold start does not wait for it.
    """

    folder: Path
    cache: Cache

    @property
    def model_id(self) -> str:
        return self.cache.manifest.model_id

    @property
    def rebuild(self) -> str:
        """The command that rebuilds this cache."""
        return rebuild_command(self.folder, self.model_id)

    @property
    def shape(self) -> dict[str, int]:
        """Layers, heads, head size, MLP neurons and hidden size of the model the cache belongs to."""
        return self.cache.manifest.shape

    @property
    def n_layers(self) -> int:
        return self.shape["n_layers"]

    @property
    def emotions(self) -> tuple[str, ...]:
        return EMOTIONS

    def tensor(self, name: str) -> torch.Tensor:
        """A saved tensor, for computing with torch (the first call imports it)."""
        self.array(name)
        return self.cache.tensors[name]

    def array(self, name: str) -> np.ndarray:
        """A saved tensor as numpy, for showing it: pages that only show saved results never import torch."""
        try:
            return self.cache.arrays[name]
        except KeyError:
            raise CacheError(f"The cache at {self.folder} has no '{name}'; rebuild it with `{self.rebuild}`.") from None

    def table(self, name: str) -> pd.DataFrame:
        try:
            return self.cache.tables[name]
        except KeyError:
            raise CacheError(f"The cache at {self.folder} has no '{name}' table; rebuild it with `{self.rebuild}`.") from None

    def emotion_index(self, emotion: str) -> int:
        if emotion not in EMOTIONS:
            raise ValueError(f"Unknown emotion '{emotion}'; choose one of {', '.join(EMOTIONS)}.")
        return EMOTIONS.index(emotion)

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"Layer {layer} is out of range; this model has layers 0 to {self.n_layers - 1}.")
        return layer

    def map_points(self, layer: int, method: str = "umap") -> pd.DataFrame:
        """The prompts table with ``x``/``y`` of the chosen map at ``layer``."""
        if method not in ("umap", "pca"):
            raise ValueError(f"Unknown map '{method}'; choose umap or pca.")
        xy = self.array(method)[self.check_layer(layer)]
        return self.table("prompts").assign(x=xy[:, 0], y=xy[:, 1])

    def place_states(self, states: torch.Tensor, layer: int, method: str = "umap") -> np.ndarray:
        """Map positions ``[m, 2]`` at ``layer`` for new last-token ``resid_post`` states ``[m, d_model]`` (see ``place_on_map``)."""
        layer = self.check_layer(layer)
        directions = self.tensor("directions.resid_post")[:, layer].float()  # [E, d]
        new = ((states.float() - self.tensor("map.centre")[layer]) @ directions.T).numpy()
        return place_on_map(new, self.array("map.coordinates")[layer], self.array(method)[layer])

    def cosine_matrix(self, layer: int) -> pd.DataFrame:
        """The emotion x emotion cosine table at ``layer``."""
        values = self.array("cosines")[self.check_layer(layer)]
        return pd.DataFrame(values, index=list(EMOTIONS), columns=list(EMOTIONS))

    def separation_by_layer(self) -> pd.DataFrame:
        """``layer``, ``silhouette`` and ``probe_accuracy`` for every layer."""
        return pd.DataFrame(
            {
                "layer": range(self.n_layers),
                "silhouette": self.array("separation"),
                "probe_accuracy": self.array("probe_accuracy"),
            }
        )

    def nearest(self, layer: int) -> pd.DataFrame:
        """Each emotion's nearest other emotion at ``layer``."""
        table = self.table("nearest")
        return table[table["layer"] == self.check_layer(layer)].reset_index(drop=True)

    def head_scores(self, emotion: str) -> torch.Tensor:
        """``[L, H]`` head importance of one emotion."""
        return self.tensor("head_scores")[self.emotion_index(emotion)]

    def neuron_scores(self, emotion: str) -> torch.Tensor:
        """``[L, d_mlp]`` neuron contributions of one emotion."""
        return self.tensor("neuron_scores")[self.emotion_index(emotion)]

    def sublayer_importance(self, emotion: str) -> torch.Tensor:
        """``[L, 2]`` sublayer importance of one emotion (attention, MLP)."""
        return self.tensor("sublayer_importance")[self.emotion_index(emotion)]

    def cross_layer(self, emotion: str) -> torch.Tensor:
        """``[2L, 2L]`` cross-layer similarity of one emotion's direction."""
        return self.tensor("cross_layer")[self.emotion_index(emotion)]

    def top_heads(self, emotion: str, k: int | None = None) -> pd.DataFrame:
        """Heads ranked by importance over the whole model: ``layer``, ``head``, ``score`` (every head with ``k=None``)."""
        return _ranked(self.head_scores(emotion), "head", k)

    def top_neurons(self, emotion: str, k: int | None = None) -> pd.DataFrame:
        """Neurons ranked by contribution over the whole model: ``layer``, ``neuron``, ``score`` (every neuron with ``k=None``)."""
        return _ranked(self.neuron_scores(emotion), "neuron", k)

    def circuit(self, emotion: str) -> Circuit:
        """The emotion's circuit as selected at build time."""
        return circuit_from_table(self.table("circuit"), self.emotions[self.emotion_index(emotion)])

    def reading(self) -> EmotionReading:
        """The model's calibrated internal emotion reading (raises ``CacheError`` naming the rebuild for an older cache)."""
        from emo_core.reading import EmotionReading  # computes with torch: imported by the pages that read a model

        names = ("reading.layers", "reading.calibration", "expression.resid_post")
        return EmotionReading.from_tensors({name: self.tensor(name) for name in names})

    def layer_reading(self) -> LayerReading:
        """The emotion reading at every layer, calibrated on the second judge's corpus (raises ``CacheError`` naming the rebuild for
        a cache that predates it)."""
        from emo_core.reading import LayerReading  # computes with torch: imported by the pages that read a model

        self._require_corpus()
        names = ("layer_reading.calibration", "layer_reading.auc", "expression.resid_post")
        return LayerReading.from_tensors({name: self.tensor(name) for name in names})

    def neuron_top_sentences(self, layer: int, index: int) -> pd.DataFrame:
        """The corpus sentences on which neuron ``index`` of ``layer`` fires most, per emotion: ``emotion``, ``rank`` (1 =
        highest), ``text`` and ``activation`` (the neuron's largest activation over the sentence's tokens)."""
        layer = self.check_layer(layer)
        d_mlp = self.shape["d_mlp"]
        if not 0 <= index < d_mlp:
            raise ValueError(f"Neuron {index} is out of range; layer {layer} has neurons 0 to {d_mlp - 1}.")
        self._require_corpus()
        indices = self.array("corpus.top_index")[:, layer, index].astype(np.int64)  # [E, k]
        values = self.array("corpus.top_value")[:, layer, index]
        texts = self.table("corpus")["text"].to_numpy()
        k = indices.shape[1]
        return pd.DataFrame(
            {
                "emotion": np.repeat(EMOTIONS, k),
                "rank": np.tile(np.arange(1, k + 1), len(EMOTIONS)),
                "text": texts[indices.ravel()],
                "activation": values.ravel(),
            }
        )

    def _require_corpus(self) -> None:
        """Raise ``CacheError`` naming the rebuild when the cache predates the corpus readings (``corpus.py``)."""
        missing = [name for name in CORPUS_TENSORS if name not in self.cache.arrays]
        missing += [] if "corpus" in self.cache.tables else ["the corpus table"]
        if missing:
            raise CacheError(
                f"The cache at {self.folder} has no corpus readings ({', '.join(missing)}; it predates them); "
                f"rebuild it with `{self.rebuild}`."
            )

    def steering_kit(self, bundle: ModelBundle) -> SteeringKit:
        """Steering for ``bundle`` (the model these results belong to) from the saved vectors, circuits and tuned settings."""
        from emo_core.steering import SteeringKit  # computes with torch: imported by the pages that steer a model

        return SteeringKit.from_tensors(bundle, self.cache.tensors, self.table("steering"))

    @cached_property
    def neutral_means(self) -> NeutralMeans:
        """Every part's mean output over emotion-free prompts: what mean ablation sets a part to."""
        return NeutralMeans(self.tensor("means.attn_z"), self.tensor("means.mlp_post"))

    def steering_settings(self, method: str, emotion: str) -> dict:
        """Tuned ``layers`` and ``strength`` of a steering method for one emotion."""
        from emo_core.steering import tuned_settings

        return tuned_settings(self.table("steering"), method, emotion)

    def causal_effects(self, baseline: str = "steered", kind: Kind = "neuron", mode: str = "mean") -> torch.Tensor:
        """``[E, L, units]`` estimated drop of each emotion's reading (positive = it falls) when each head or neuron is
        switched off, on the ``baseline`` reply toward that emotion (``attribution.py``)."""
        if baseline not in CAUSAL_KINDS or kind not in KINDS or mode not in ("zero", "mean"):
            raise ValueError(
                f"No causal ranking for baseline '{baseline}', kind '{kind}', mode '{mode}'; choose a baseline of "
                f"{', '.join(CAUSAL_KINDS)}, head or neuron, zero or mean."
            )
        return self._causal(effect_name(baseline, kind, mode))

    def causal_harm(self, kind: Kind = "neuron", mode: str = "mean") -> tuple[torch.Tensor, float]:
        """``[L, units]`` estimated rise of the language-model loss on neutral prompts per part, and that loss untouched."""
        return self._causal(harm_name(kind, mode)), float(self._causal(HARM_BASE)[0])

    def causal_scores(self, baseline: str = "steered", kind: Kind = "neuron", mode: str = "mean") -> torch.Tensor:
        """``[E, L, units]`` ranking scores: specific drops of the emotion's reading, ``-inf`` for harmful parts (``causal.py``)."""
        harm, base = self.causal_harm(kind, mode)
        return causal_scores(self.causal_effects(baseline, kind, mode), harm, base)

    def causal_ranking(
        self, emotion: str, kind: Kind = "neuron", mode: str = "mean", baseline: str = "steered", k: int | None = None
    ) -> pd.DataFrame:
        """One emotion's heads or neurons ranked by what switching them off does: ``layer``, ``head``/``neuron``,
        ``own`` (drop of its reading), ``others`` (mean drop of the other emotions' readings), ``harm``, ``score``, ``eligible``."""
        e = self.emotion_index(emotion)
        own = self.causal_effects(baseline, kind, mode)
        harm, base = self.causal_harm(kind, mode)
        table = ranking_table(own[e], others_mean(own)[e], harm, causal_scores(own, harm, base)[e], kind)
        return table if k is None else table.head(k)

    def ranked_parts(self, emotion: str, kind: Kind, k: int, excluded: frozenset[Component] = frozenset()) -> list[Component]:
        """The ``k`` heads or neurons that matter most for ``emotion``, leaving out ``excluded``: the causal ranking (steered
        baseline, mean ablation; specific and harmless), or the paper's score for a cache that predates causal rankings."""
        try:
            scores = self.causal_scores("steered", kind, "mean")[self.emotion_index(emotion)]
        except CacheError:
            scores = self.head_scores(emotion) if kind == "head" else self.neuron_scores(emotion)
        return [component for component, _ in top_parts(scores, kind, k + len(excluded)) if component not in excluded][:k]

    def named_parts(self, emotion: str, spec: Ranked, excluded: frozenset[Component] = frozenset()) -> list[Component]:
        """The parts a ranking names for ``emotion``: the top ``k`` of the causal ranking outside ``excluded``, or the
        emotion's circuit."""
        if spec.ranking == "circuit":
            return circuit_components(self.circuit(emotion))
        return self.ranked_parts(emotion, spec.kind, spec.k, excluded)

    @cached_property
    def _prepared(self) -> dict[str, PreparedKnockout]:
        from emo_core.prepared import chosen

        if "prepared" not in self.cache.tables:
            raise CacheError(f"The cache at {self.folder} has no prepared knockouts (it predates them); rebuild it with `{self.rebuild}`.")
        return chosen(self.table("prepared"))

    def prepared(self, emotion: str) -> PreparedKnockout:
        """``emotion``'s prepared knockout: the baseline and parts ``build`` chose as the page's default (``prepared.py``);
        the choice is made once per loaded cache."""
        if emotion not in self._prepared:
            raise CacheError(f"The cache at {self.folder} has no prepared knockout for '{str(emotion)[:40]}'.")
        return self._prepared[emotion]

    def fluent_strength(self, method: str, emotion: str) -> float:
        """The strongest ``method`` steering toward ``emotion`` that ``build`` checked as fluent on training prompts: the
        tuned strength, or the prepared knockout's baseline when it steers harder by the same method and its candidate
        passed the prepared knockouts' fluency check (``prepared.choose``). The classroom-safe setting caps steering here."""
        strength = self.steering_settings(method, emotion)["strength"]
        try:
            prepared = self.prepared(emotion)
        except CacheError:
            return strength
        if prepared.baseline.method == method and prepared.eligible and prepared.baseline.strength is not None:
            return max(strength, prepared.baseline.strength)
        return strength

    def _causal(self, name: str) -> torch.Tensor:
        if name not in self.cache.arrays:
            raise CacheError(
                f"The cache at {self.folder} has no causal rankings ('{name}'; it predates them); rebuild it with `{self.rebuild}`."
            )
        return self.cache.tensors[name]

    @cached_property
    def report(self) -> dict | None:
        """The evaluation report, or ``None`` before ``python -m emo_core evaluate`` has run."""
        path = self.folder / REPORT
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise CacheError(f"The report {path} is damaged; rerun `python -m emo_core evaluate`.") from error


def _ranked(scores: torch.Tensor, kind: Kind, k: int | None) -> pd.DataFrame:
    values, layers, index = top_indices(scores, k)
    return pd.DataFrame({"layer": layers.numpy(), kind: index.numpy(), "score": values.numpy()})


def cache_folder(model_id: str, root: Path = CACHE_ROOT) -> Path:
    """Where the cache of ``model_id`` lives."""
    return Path(root) / model_slug(model_id)


def available_caches(root: Path = CACHE_ROOT) -> list[str]:
    """Model ids of every readable cache under ``root``."""
    ids = []
    for folder in sorted(Path(root).glob("*/")):
        try:
            ids.append(read_manifest(folder).model_id)
        except CacheError:
            continue
    return ids


def load_results(model_id: str, root: Path = CACHE_ROOT) -> Results:
    """The cache of ``model_id``, loaded only if it was built from the current training prompts, with these
    library versions, and is intact (raises ``CacheError`` naming what differs and the rebuild command)."""
    folder = cache_folder(model_id, root)
    prompts = emotion_prompts(training_skeletons(read_manifest(folder, model_id).skeletons))
    return Results(folder, read_cache(folder, model_id=model_id, prompt_set_hash=prompt_set_hash(prompts)))
