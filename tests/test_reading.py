"""The internal emotion reading: the contrast it computes, its calibration, and the states it is read from."""

from __future__ import annotations

import pytest
import torch

import emo_core as ec
from emo_core.activations import neutral_means
from emo_core.generation import encode
from emo_core.reading import EmotionReading, calibration, emotion_contrast, reading_layers, unit_directions
from emo_core.scenarios import EMOTIONS, PromptSpec
from emo_core.scoring import Row, generate_rows
from tests.conftest import tiny_model


@pytest.fixture(scope="module")
def tiny_llama(embedded: ec.ModelBundle) -> ec.ModelBundle:
    return ec.bundle_from(tiny_model("llama"), embedded.tokenizer, name="tiny-llama")


def test_contrast_is_own_projection_minus_the_others_mean_over_layers() -> None:
    torch.manual_seed(0)
    states = torch.randn(5, 3, 8)
    units = unit_directions(torch.randn(6, 4, 8), (1, 2, 3))
    got = emotion_contrast(states, units)
    for n in range(5):
        for e in range(6):
            per_layer = [states[n, k] @ units[e, k] - sum(states[n, k] @ units[f, k] for f in range(6) if f != e) / 5 for k in range(3)]
            assert float(got[n, e]) == pytest.approx(float(sum(per_layer) / 3), rel=1e-4, abs=1e-5)


def test_calibration_puts_plain_at_zero_and_steered_at_one() -> None:
    torch.manual_seed(0)
    units = unit_directions(torch.randn(6, 2, 8), (0, 1))
    plain_states = torch.randn(10, 2, 8)
    steered_states = {emotion: torch.randn(10, 2, 8) + 3 * units[e] for e, emotion in enumerate(EMOTIONS)}
    zero, one = calibration(emotion_contrast(plain_states, units), {e: emotion_contrast(s, units) for e, s in steered_states.items()})
    reading = EmotionReading((0, 1), units, zero, one)
    torch.testing.assert_close(reading(plain_states).mean(dim=0), torch.zeros(6), atol=1e-5, rtol=0)
    for e, emotion in enumerate(EMOTIONS):
        assert float(reading(steered_states[emotion])[:, e].mean()) == pytest.approx(1.0, abs=1e-5)
    back = EmotionReading.from_tensors({**reading.to_tensors(), "expression.resid_post": torch.randn(6, 2, 8) * 0 + units * 2})
    assert back.layers == (0, 1)
    torch.testing.assert_close(back.units, units)
    torch.testing.assert_close(back(plain_states), reading(plain_states))


def test_reading_layers_are_late_and_exclude_the_last() -> None:
    assert reading_layers(30) == (25, 26, 27, 28)
    assert reading_layers(3) == (2,) or max(reading_layers(3)) < 3


def test_observed_reply_states_equal_a_teacher_forced_pass(tiny_llama: ec.ModelBundle) -> None:
    """The states carried by a reply are the ones a fresh forward pass over prompt + reply gives at the producing positions."""
    prompt = ec.chat_prompt(tiny_llama, "I lost my keys\nA neighbour found them.", "Keep it short.")
    settings = ec.GenerationSettings(max_new_tokens=6, min_new_tokens=6)
    (reply,) = generate_rows(tiny_llama, [Row(prompt, "anger")], settings, observe=(1, 2))
    assert reply.states.shape == (6, 2, tiny_llama.shape.d_model)
    ids = torch.tensor([list(encode(tiny_llama, [prompt])["input_ids"][0]) + list(reply.token_ids)])
    with torch.inference_mode(), ec.capture(tiny_llama, ["resid_post"], layers=[1, 2]) as captured:
        tiny_llama.model(input_ids=ids)
    forced = torch.stack([captured[("resid_post", layer)][0] for layer in (1, 2)], dim=1)  # [pos, 2, d]
    first = reply.prompt_tokens - 1
    torch.testing.assert_close(reply.states, forced[first : first + 6], atol=1e-9, rtol=1e-7)


def test_neutral_means_average_every_real_token(tiny_llama: ec.ModelBundle) -> None:
    prompts = [
        PromptSpec("s", "work", "neutral", None, "Be brief.", text) for text in ("Hello there", "A much longer message about my day")
    ]
    means = neutral_means(tiny_llama, prompts, batch_size=2)
    parts = []
    for p in prompts:
        batch = encode(tiny_llama, [ec.chat_prompt(tiny_llama, p.user, p.system)])
        with torch.inference_mode(), ec.capture(tiny_llama, ["mlp_post"], layers=[1]) as captured:
            tiny_llama.model(**batch)
        parts.append(captured[("mlp_post", 1)][0])
    expected = torch.cat(parts).mean(dim=0)
    torch.testing.assert_close(means["mlp_post"][1], expected, atol=1e-9, rtol=1e-7)


def test_the_reading_stores_its_layers_as_the_caches_float32_and_reads_the_same_back() -> None:
    units = unit_directions(torch.randn(6, 5, 8), (2, 4))
    reading = EmotionReading((2, 4), units, torch.arange(6.0), torch.arange(6.0) + 2)
    stored = reading.to_tensors()
    assert stored["reading.layers"].dtype == torch.float32 and stored["reading.layers"].tolist() == [2.0, 4.0]
    assert stored["reading.calibration"].tolist() == [list(range(6)), [x + 2.0 for x in range(6)]]


def test_the_layer_reading_puts_each_layers_zero_and_one_where_its_calibration_says() -> None:
    """Per layer and emotion, a state whose contrast equals that layer's ``zero`` reads 0 and any other reads its contrast's
    distance from ``zero`` in units of ``one - zero``; the reading stored in a cache reads the same."""
    torch.manual_seed(0)
    vectors = torch.randn(6, 4, 8)
    units = unit_directions(vectors, tuple(range(4)))
    states = torch.randn(3, 4, 8)
    contrast = ec.reading.layer_contrasts(states, units)  # [3, L, E]
    zero, one = contrast[0], contrast[0] + torch.linspace(0.5, 3.0, 24).reshape(4, 6)
    reading = ec.reading.LayerReading(units, zero, one, torch.full((4, 6), 0.7))
    read = reading(states)
    assert read.shape == (3, 4, 6)
    torch.testing.assert_close(read[0], torch.zeros(4, 6), atol=1e-5, rtol=0)
    torch.testing.assert_close(read[1:], (contrast[1:] - zero) / (one - zero), atol=1e-5, rtol=1e-5)
    stored = reading.to_tensors()
    assert sorted(stored) == ["layer_reading.auc", "layer_reading.calibration"]
    back = ec.reading.LayerReading.from_tensors({**stored, "expression.resid_post": vectors * 3})
    torch.testing.assert_close(back.units, units)
    torch.testing.assert_close(back.zero, zero)
    torch.testing.assert_close(back.one, one)
    torch.testing.assert_close(back.auc, reading.auc)
    torch.testing.assert_close(back(states), read)
    assert (back.auc.dtype, back.zero.dtype) == (torch.float32, torch.float32)


def test_a_reading_whose_one_is_not_above_its_zero_stays_finite() -> None:
    units = unit_directions(torch.randn(6, 2, 8), (0, 1))
    flat = EmotionReading((0, 1), units, torch.ones(6), torch.ones(6))
    assert flat(torch.randn(4, 2, 8)).isfinite().all()
    layered = ec.reading.LayerReading(units, torch.ones(2, 6), torch.ones(2, 6), torch.zeros(2, 6))
    assert layered(torch.randn(4, 2, 8)).isfinite().all()


def test_reading_layers_of_small_models_fall_back_to_the_last_layer() -> None:
    assert reading_layers(1) == (0,) and reading_layers(2) == (1,) and reading_layers(6) == (5,)
    assert reading_layers(12) == (10,) and reading_layers(24) == (20, 21, 22)


def test_unit_directions_are_unit_length_per_emotion_and_layer_whatever_their_length() -> None:
    vectors = torch.randn(6, 5, 8) * torch.linspace(0.01, 0.5, 5)[None, :, None]  # shorter than 1
    units = unit_directions(vectors, (0, 2, 4))
    torch.testing.assert_close(units.norm(dim=-1), torch.ones(6, 3))
    torch.testing.assert_close(units, vectors[:, [0, 2, 4]] / vectors[:, [0, 2, 4]].norm(dim=-1, keepdim=True))


def test_a_calibration_span_under_one_still_scales_the_reading() -> None:
    units = unit_directions(torch.randn(6, 1, 8), (0,))
    states = torch.randn(3, 1, 8)
    contrast = emotion_contrast(states, units)
    reading = EmotionReading((0,), units, torch.zeros(6), torch.full((6,), 0.25))
    torch.testing.assert_close(reading(states), contrast / 0.25)
