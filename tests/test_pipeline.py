"""The pipeline end to end on a tiny model: build, resume, evaluate, the CLI, and their pieces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import emo_core as ec
from emo_core import scenarios
from emo_core.activations import extract
from emo_core.baselines import Baseline
from emo_core.cli import knockout_parts, main
from emo_core.directions import complete_groups, emotion_directions
from emo_core.evaluation import EvalSettings, evaluate
from emo_core.fluency import degenerate_reason
from emo_core.knockout_curves import CurveSettings
from emo_core.parts import Component, circuit_components, parse_tokens
from emo_core.pipeline import BuildSettings, build, cluster_separation
from emo_core.prepared import PrepareSettings, choose
from emo_core.projection import _standardise, align_to, emotion_coordinates, pca_maps, umap_maps
from emo_core.reading import EmotionReading, reading_layers
from emo_core.results import load_results
from emo_core.scenarios import EMOTIONS, emotion_prompts, training_skeletons
from emo_core.scoring import Row, generate_rows, score_replies
from emo_core.stats import bootstrap_interval
from emo_core.steering import circuit_steering
from emo_core.store import CacheError
from tests.conftest import tiny_model

TINY_BUILD = BuildSettings(
    batch_size=16,
    importance_prompts=4,
    umap_epochs=20,
    probe_folds=2,
    skeletons=4,
    tuning_prompts=1,
    prepare=PrepareSettings(prompts=3, max_new_tokens=6),
    corpus_per_label=3,
)


@pytest.fixture(scope="module")
def tiny_llama(embedded: ec.ModelBundle) -> ec.ModelBundle:
    return ec.bundle_from(tiny_model("llama").float(), embedded.tokenizer, name="tiny-llama")


# Tests that use ``built`` (a tiny build: 11 s on 2 cores) or run the CLI on the real model are marked slow.
@pytest.fixture(scope="module")
def skeleton_files_read() -> list[Path]:
    """Every scenario file the module's build read (filled by ``built``)."""
    return []


@pytest.fixture(scope="module")
def built(tiny_llama: ec.ModelBundle, tmp_path_factory: pytest.TempPathFactory, skeleton_files_read: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("caches")
    read = scenarios.read_skeletons

    def recording(path: Path) -> list[scenarios.Skeleton]:
        skeleton_files_read.append(Path(path))
        return read(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scenarios, "read_skeletons", recording)
        build(bundle=tiny_llama, root=root, settings=TINY_BUILD)
    return root


class FixedJudge:
    """Calls every text the same label, so scores are predictable."""

    def __init__(self, label: str) -> None:
        self.label = label

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        probs = np.full((len(texts), 7), 0.01)
        probs[:, ec.judge.LABELS.index(self.label)] = 0.94
        return probs


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I'm so glad it worked out, what a lovely surprise!", None),
        ("I'm thrilled that Zorbatech gave me the job at Kowalczyk & Sons!", None),
        ("", "empty"),
        ("!!!! ???? #### 1234 $$$$", "mostly symbols"),
        ("no no no no no", "repeated word"),
        ("pre-moradier-refimabredly-finally-written-no-mafci bimmaeplacermcr", "non-words"),
        ("the cat sat on the mat the cat sat on the mat the cat sat on the mat", "repeated phrase"),
    ],
)
def test_degenerate_replies_are_recognised(text: str, reason: str | None) -> None:
    assert degenerate_reason(text) == reason


def test_alignment_undoes_a_rotation_and_scale() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2))
    angle = 1.1
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 3.0 * points @ rotation + 5.0
    np.testing.assert_allclose(align_to(moved, points), align_to(points, points), atol=1e-9)


def test_pca_maps_stay_aligned_across_identical_layers() -> None:
    rng = np.random.default_rng(1)
    layer = rng.normal(size=(40, 8))
    maps = pca_maps(np.stack([layer, -layer, layer @ np.diag([1.0] * 8)], axis=1))
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    np.testing.assert_allclose(maps[0], maps[2], atol=1e-5)


def test_umap_maps_are_those_of_umap_on_the_raw_points() -> None:
    """The distances are precomputed for speed only: every map is bit for bit the ``metric="euclidean"`` one."""
    import umap

    acts = np.random.default_rng(4).normal(size=(200, 2, 6)).astype(np.float32)
    fit = dict(n_components=2, metric="euclidean", n_neighbors=15, min_dist=0.3, n_epochs=30, random_state=0)
    first = _standardise(umap.UMAP(init="spectral", **fit).fit_transform(acts[:, 0]))
    second = align_to(umap.UMAP(init=first * 5.0, **fit).fit_transform(acts[:, 1]), first)
    np.testing.assert_array_equal(umap_maps(acts, n_epochs=30), np.stack([first, second]).astype(np.float32))


def test_separation_scores_see_separable_labels() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(np.array(["a", "b"]), 20)
    centres = np.where(labels[:, None] == "a", 5.0, -5.0)
    acts = np.stack([rng.normal(size=(40, 4)) + centres, rng.normal(size=(40, 4))], axis=1)
    silhouette, probe = cluster_separation(acts, acts, labels, np.arange(40) % 4, folds=2)
    assert silhouette[0] > 0.5 > silhouette[1]
    assert probe[0] == 1.0 and probe[1] < 0.8


def test_emotion_coordinates_are_projections_on_each_layers_directions() -> None:
    rng = np.random.default_rng(3)
    acts = rng.normal(size=(10, 2, 5))
    directions = rng.normal(size=(6, 2, 5))
    coordinates = emotion_coordinates(acts, directions)
    assert coordinates.shape == (10, 2, 6)
    expected = (acts[4, 1] - acts[:, 1].mean(axis=0)) @ directions[2, 1]
    np.testing.assert_allclose(coordinates[4, 1, 2], expected, rtol=1e-5)


def test_bootstrap_interval_brackets_the_mean() -> None:
    low, high = bootstrap_interval([0.1, 0.2, 0.3, 0.4], n=500, seed=0)
    assert low <= 0.25 <= high
    assert bootstrap_interval([0.5] * 5, n=100, seed=0) == [0.5, 0.5]


def test_scores_reward_only_fluent_on_target_replies() -> None:
    rows = [Row("p", "anger"), Row("p", "anger"), Row("p", "fear")]
    replies = [ec.Reply(text, (), 0) for text in ("I am furious about this!", "no no no no no", "I am furious about this!")]
    table = score_replies(FixedJudge("anger"), rows, replies)
    assert table["hit"].tolist() == [True, False, False]
    assert table["degenerate"].tolist() == [False, True, False]


def test_generate_rows_shares_plain_replies_and_keeps_edits_to_their_row(tiny_llama: ec.ModelBundle) -> None:
    prompt = ec.chat_prompt(tiny_llama, "I lost my keys.")
    steer = ec.ResidualAddition({1: torch.ones(tiny_llama.shape.d_model)}, alpha=3.0)
    settings = ec.GenerationSettings(max_new_tokens=5)
    rows = [Row(prompt, "anger"), Row(prompt, "fear"), Row(prompt, "anger", (steer,))]
    shared, again, steered = generate_rows(tiny_llama, rows, settings)
    alone = ec.generate(tiny_llama, [prompt], settings)[0]
    assert shared == again == alone
    assert steered == ec.generate(tiny_llama, [prompt], settings, [steer])[0]


def test_circuit_steering_edits_only_circuit_components(tiny_llama: ec.ModelBundle) -> None:
    circuit = ec.circuit.Circuit("anger", heads=((1, 2, 0.5),), neurons=((0, 3, 0.4), (0, 7, 0.2)), weights={(0, 1): 1.0, (1, 0): 0.5})
    shape = tiny_llama.shape
    attn = torch.ones(shape.n_layers, shape.n_heads * shape.head_dim)
    mlp = torch.ones(shape.n_layers, shape.d_mlp)
    edits = circuit_steering(tiny_llama, circuit, attn, mlp, strength=2.0)
    assert [(e.site, e.layer, e.channels) for e in edits] == [
        ("attn_z", 1, tuple(range(2 * shape.head_dim, 3 * shape.head_dim))),
        ("mlp_post", 0, (3, 7)),
    ]
    assert edits[0].add.tolist() == [2.0] * shape.head_dim
    assert edits[1].add.tolist() == [1.0, 1.0]
    assert circuit_steering(tiny_llama, circuit, attn, mlp, strength=0.0)[1].add.abs().sum() == 0


@pytest.mark.slow
def test_build_writes_a_complete_readable_cache(built: Path, tiny_llama: ec.ModelBundle) -> None:
    results = load_results("tiny-llama", built)
    n_layers, n_prompts = tiny_llama.shape.n_layers, 4 * 3 * 6
    assert results.tensor("umap").shape == (n_layers, n_prompts, 2)
    assert results.tensor("cosines").shape == (n_layers, 6, 6)
    assert len(results.table("prompts")) == n_prompts
    assert set(results.table("steering")["method"]) == {"direction", "circuit"}
    assert set(results.table("nearest")["emotion"]) == set(EMOTIONS)
    assert results.circuit("anger").emotion == "anger"
    reading = EmotionReading.from_tensors(results.cache.tensors)
    assert reading.layers == reading_layers(n_layers) and reading.units.shape == (6, len(reading.layers), tiny_llama.shape.d_model)
    assert results.tensor("means.attn_z").shape == (n_layers, tiny_llama.shape.n_heads * tiny_llama.shape.head_dim)
    assert results.tensor("means.mlp_post").shape == (n_layers, tiny_llama.shape.d_mlp)
    assert results.causal_effects("continued", "head", "zero").shape == (6, n_layers, tiny_llama.shape.n_heads)
    assert set(results.causal_ranking("fear", "neuron", "mean", "asked").columns) >= {"layer", "neuron", "own", "others", "harm", "score"}
    assert len(results.table("corpus")) == 3 * 7 and results.tensor("corpus.top_index").shape == (6, n_layers, tiny_llama.shape.d_mlp, 3)
    assert set(results.neuron_top_sentences(1, 2)["emotion"]) == set(EMOTIONS)
    assert results.layer_reading().auc.shape == (n_layers, 6)
    assert not (built / "tiny-llama.work").exists()


@pytest.mark.slow
def test_the_build_prepares_one_knockout_per_emotion_from_its_candidates(built: Path, tiny_llama: ec.ModelBundle) -> None:
    results = load_results("tiny-llama", built)
    table = choose(results.table("prepared"))
    settings = TINY_BUILD.prepare
    kit = results.steering_kit(tiny_llama)
    assert len(table) == len(EMOTIONS) * len(settings.baselines) * len(settings.sizes)
    assert (table.groupby("emotion")["chosen"].sum() == 1).all()
    for column in ("removed", "random_removed", "degenerate", "random_degenerate"):
        assert table[column].between(0, 1).all(), column
    assert (table["score"] == table["removed"] - table["random_removed"]).all()
    assert (table["carried"] <= table["prompts"]).all() and (table["prompts"] == settings.prompts).all()
    for emotion, group in table.groupby("emotion"):
        pick = group[group["chosen"]].iloc[0]
        pool = group[group["eligible"]] if group["eligible"].any() else group
        assert pick["score"] == pool["score"].max()  # the best candidate it could choose
        prepared = results.prepared(emotion)
        assert prepared.baseline.strength == pytest.approx(pick["factor"] * kit.settings(pick["method"], emotion)["strength"])
        assert len(prepared.parts) <= pick["heads"] + pick["neurons"]
        for row in group.itertuples():
            parts = set(parse_tokens(row.parts.split())[0])
            assert sum(c.kind == "head" for c in parts) <= row.heads and sum(c.kind == "neuron" for c in parts) <= row.neurons
            if row.method == "circuit":  # never the parts its steering pushes: that would only undo the push
                assert not parts & Baseline("steered", "circuit").pushes(kit, emotion)


@pytest.mark.slow
def test_the_build_reads_only_training_skeletons(built: Path, skeleton_files_read: list[Path]) -> None:
    assert {path.name for path in skeleton_files_read} == {"scenarios_train.jsonl"}
    ids = set(load_results("tiny-llama", built).table("prompts")["skeleton_id"])
    assert ids == {s.skeleton_id for s in training_skeletons(TINY_BUILD.skeletons)}
    assert not ids & {s.skeleton_id for s in scenarios.load_skeletons("eval")}


@pytest.mark.slow
def test_an_interrupted_build_resumes_to_the_same_cache(built: Path, tiny_llama: ec.ModelBundle, tmp_path: Path) -> None:
    """Interrupted during extraction (so the resumed run reads shards); checked against a build with its own shard folder
    and against activations extracted with no shards at all."""

    def stop_after_two_batches(stage: str, done: int, total: int) -> None:
        if stage == "activations" and done == 2 * TINY_BUILD.batch_size:
            raise KeyboardInterrupt

    assert tmp_path != built
    with pytest.raises(KeyboardInterrupt):
        build(bundle=tiny_llama, root=tmp_path, settings=TINY_BUILD, progress=stop_after_two_batches)
    assert len(list((tmp_path / "tiny-llama.work").rglob("*.safetensors"))) == 2
    with pytest.raises(CacheError):
        load_results("tiny-llama", tmp_path)
    build(bundle=tiny_llama, root=tmp_path, settings=TINY_BUILD)
    resumed, uninterrupted = load_results("tiny-llama", tmp_path), load_results("tiny-llama", built)
    for name, tensor in uninterrupted.cache.tensors.items():
        torch.testing.assert_close(resumed.tensor(name), tensor, msg=name)
    pd.testing.assert_frame_equal(resumed.table("circuit"), uninterrupted.table("circuit"))
    prompts = emotion_prompts(training_skeletons(TINY_BUILD.skeletons))
    unsharded = extract(tiny_llama, prompts, TINY_BUILD.batch_size)
    for site in ("resid_mid", "resid_post"):
        expected = emotion_directions(unsharded[site], complete_groups(prompts))
        torch.testing.assert_close(resumed.tensor(f"directions.{site}"), expected, msg=site)


@pytest.mark.slow
def test_evaluate_writes_the_report_fields(built: Path, tiny_llama: ec.ModelBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    import emo_core.knockout_curves as knockout_curves

    generated = []  # what the curves generate: the steering evaluation's direction and prompted replies are reused

    def spy(bundle: ec.ModelBundle, rows: list, *args: object, **kwargs: object) -> list:
        generated.extend(rows)
        return generate_rows(bundle, rows, *args, **kwargs)

    monkeypatch.setattr(knockout_curves, "generate_rows", spy)
    # The fluency check's precision and recall come from the built-in model over 384 labelled replies (test_fluency.py
    # measures them); here only that the report carries what the check measured.
    measured = {"precision": 0.5, "recall": 0.25, "fluent": 3, "broken": 4, "recall_by_kind": {"loop": 0.25}}
    monkeypatch.setattr("emo_core.fluency.measure", lambda: measured)
    curves = CurveSettings(prompts=1, draws=1, target_draws=2, ks=(1, 2), harm_prompts=1, judged_prompts=2, judged=(("neuron", 2),))
    report = evaluate(bundle=tiny_llama, root=built, settings=EvalSettings(skeletons=1, bootstrap=50, curves=curves))
    baselines = [dict(row.tags).get("baseline") for row in generated]
    assert "continued" in baselines and not {"steered", "asked"} & set(baselines)  # only the continued baseline is new
    assert len(generated) == baselines.count("continued") + 2 * 2 * len(EMOTIONS)  # and the judged knockouts, top and random
    on_disk = json.loads((built / "tiny-llama" / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert 0 <= report["judge"]["heldout_accuracy"] <= 1
    assert report["fluency_check"] == measured
    for method in ("asked", "direction", "circuit"):
        summary = report["steering"][method]
        assert set(summary["per_emotion"]) == set(EMOTIONS)
        assert all(0 <= summary[key] <= 1 for key in ("overall", "degenerate_rate"))
    reading = report["ablation"]["curves"]["reading"]
    assert set(reading) == {"steered", "asked", "continued"}
    for ranking in ("causal", "paper"):
        for kind in ("head", "neuron"):
            for entry in reading["steered"][ranking][kind]["1"].values():
                assert entry["top_ci95"][0] <= entry["top_drop"] <= entry["top_ci95"][1]
                assert entry["random_ci95"][0] <= entry["random_drop"] <= entry["random_ci95"][1]
    assert all(set(reading[baseline]["paper"]["head"]) == {"1", "2"} for baseline in reading)  # whole curves on every baseline
    assert set(reading["asked"]["causal"]["neuron"]["4"]) == set(EMOTIONS)  # the target set, with its specificity
    assert "others_own" in reading["asked"]["causal"]["neuron"]["4"]["fear"]
    assert set(report["ablation"]["curves"]["judged"]["neuron"]["2"]) == set(EMOTIONS)
    assert report["ablation"]["curves"]["harm"]["base_loss"] > 0
    assert set(report["clusters"]["nearest"]["0"]) == set(EMOTIONS)
    for emotion, entry in report["prepared"].items():
        assert entry["scenarios"] == 3 and entry["removed"] <= entry["carried"] <= 3 and 0 <= entry["p_value"] <= 1, emotion
        assert entry["meets_target"] == (
            entry["carried"] > 0 and entry["removed_share"] >= 0.7 and entry["random_share"] <= 0.2 and entry["degenerate_share"] <= 0.05
        )


@pytest.mark.slow
def test_part_specs_are_parsed_or_refused(built: Path) -> None:
    results = load_results("tiny-llama", built)
    parts = knockout_parts(["L1H2", "L0N5", "causal-neurons:3", "l1h2"], results, "anger")
    assert parts[:2] == [Component("head", 1, 2), Component("neuron", 0, 5)]  # the app's tokens, in order, once each
    assert parts[2:] == [c for c in results.ranked_parts("anger", "neuron", 3) if c != Component("neuron", 0, 5)]
    assert knockout_parts(["circuit"], results, "fear") == circuit_components(results.circuit("fear"))
    for bad in ("heads=3", "head:1:2", "causal-heads:0"):
        with pytest.raises(ValueError, match="Cannot read the parts|names no parts"):
            knockout_parts([bad], results, "anger")
    with pytest.raises(ValueError, match="needs the model's built results"):
        knockout_parts(["causal-heads:2"], None, "anger")


def test_cli_reports_bad_input_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["generate", "--scenarios", str(missing), "--out", str(tmp_path / "out.jsonl")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["evaluate", "--cache-root", str(tmp_path)]) == 2
    assert "build" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_generate_writes_one_reply_per_prompt(tmp_path: Path) -> None:
    scenarios = tmp_path / "mine.jsonl"
    skeleton = {
        "skeleton_id": "mine-1",
        "theme": "garden",
        "scenario": "I planted tomatoes in my garden this spring.",
        "event": {"positive": "They grew huge.", "neutral": "They grew as usual.", "negative": "Slugs ate them all."},
    }
    scenarios.write_text(json.dumps(skeleton) + "\n")
    out = tmp_path / "replies.jsonl"
    assert (
        main(
            [
                "generate",
                "--scenarios",
                str(scenarios),
                "--baseline",
                "asked",
                "--emotions",
                "fear",
                "--max-new-tokens",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["valence"], r["emotion"], r["baseline"], r["variant"]) for r in records] == [
        (v, "fear", "asked", "baseline") for v in ("positive", "neutral", "negative")
    ]
    assert all(isinstance(r["reply"], str) for r in records)
