"""The pipeline's fast computations equal their slow definitions."""

import pytest
import torch

import emo_core as ec
from emo_core.activations import EXTRACT_SITES, extract, extract_batch, last_token_positions, shared_prefix_length
from emo_core.arch import out_weight
from emo_core.components import head_contributions, head_importance, neuron_contributions
from emo_core.directions import complete_groups, emotion_directions, mean_differences, nearest_emotions
from emo_core.generation import encode
from emo_core.importance import aligned_local_directions, importance_batch, reference_directions
from emo_core.scenarios import EMOTIONS, emotion_prompts, load_skeletons, neutral_prompts


@pytest.fixture(scope="module")
def prompts() -> list:
    return emotion_prompts(load_skeletons("train")[:2], emotions=EMOTIONS[:2])[:3]


def _unit(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    v = torch.randn(shape, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


def test_last_token_positions_handle_both_paddings() -> None:
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert last_token_positions(left).tolist() == [3, 3]
    assert last_token_positions(right).tolist() == [1, 3]


def test_batched_extraction_equals_one_prompt_at_a_time(tiny: ec.ModelBundle, prompts: list, tmp_path) -> None:
    together = extract(tiny, prompts, batch_size=3, shard_dir=tmp_path)
    tolerance = 1e-6 if tiny.dtype == torch.float64 else 1e-5  # float32 rounds differently where a group's shared prefix ends
    for i, prompt in enumerate(prompts):
        alone = extract_batch(tiny, [prompt])
        for site, value in alone.items():
            torch.testing.assert_close(together[site][i], value[0], rtol=tolerance, atol=tolerance)
    resumed = extract(tiny, prompts, batch_size=3, shard_dir=tmp_path)
    assert all(torch.equal(resumed[site], together[site]) for site in together)


def test_shared_prefix_length_leaves_every_sequence_a_token() -> None:
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # the same prompt twice
    assert shared_prefix_length([[1, 2], [1, 2, 3]]) == 1  # one prompt the start of another
    assert shared_prefix_length([[7, 8, 9]]) == 2  # a group of one
    assert shared_prefix_length([[1, 2], [3, 2]]) == 0


def test_shared_prefix_extraction_equals_a_forward_over_the_whole_prompts(tiny: ec.ModelBundle, tmp_path) -> None:
    """Shuffled groups of 4 (one prompt twice), 2 and 1 prompts, some split across batches: every row equals the
    last-token states of one left-padded forward over the whole prompts, in the order the prompts were given."""
    every = emotion_prompts(load_skeletons("train")[:2], emotions=EMOTIONS[:3])  # index: skeleton * 9 + valence * 3 + emotion
    prompts = [every[i] for i in (13, 0, 9, 3, 6, 1, 4, 11, 15, 10, 0)]
    batch = encode(tiny, [ec.chat_prompt(tiny, p.user, p.system) for p in prompts])
    last = torch.full((len(prompts),), batch["input_ids"].shape[1] - 1)
    with torch.inference_mode(), ec.capture(tiny, EXTRACT_SITES, positions=last) as captured:
        tiny.model(**batch)
    layers = range(tiny.shape.n_layers)
    for got in (extract(tiny, prompts, batch_size=4, shard_dir=tmp_path), extract_batch(tiny, prompts)):
        for site in EXTRACT_SITES:
            expected = torch.stack([captured[(site, layer)] for layer in layers], dim=1).float()
            scale = expected.abs().max().item()
            torch.testing.assert_close(got[site], expected, rtol=0, atol=1e-6 * scale, msg=site)


def test_fast_head_importance_equals_brute_force_ablation(tiny: ec.ModelBundle, prompts: list) -> None:
    acts = extract_batch(tiny, prompts)
    n_layers, d = tiny.shape.n_layers, tiny.shape.d_model
    directions = _unit((n_layers, d), seed=5).float()
    fast = head_importance(tiny, acts["resid_mid"], acts["attn_z"], directions)
    norm = tiny.adapter.mlp_in_norm
    for layer, head in [(0, 1), (2, 3)]:
        with ec.intervene(tiny, ec.HeadAblation(((layer, head),))):
            ablated = extract_batch(tiny, prompts, sites=["resid_mid"])["resid_mid"][:, layer]
        with torch.no_grad():
            brute = norm(layer)(acts["resid_mid"][:, layer].double()) @ directions[layer].double()
            brute = brute - norm(layer)(ablated.double()) @ directions[layer].double()
        torch.testing.assert_close(fast[:, layer, head].double(), brute, rtol=1e-4, atol=1e-5)


def test_neuron_contributions_sum_to_the_projection(tiny: ec.ModelBundle, prompts: list) -> None:
    acts = extract_batch(tiny, prompts)
    directions = _unit((tiny.shape.n_layers, tiny.shape.d_model), seed=6).float()
    contributions = neuron_contributions(tiny, acts["mlp_post"], directions)
    layer = 1
    w = tiny.adapter.neuron_out_weight(layer).detach().float()
    expected = (acts["mlp_post"][:, layer] @ w.T) @ directions[layer]
    torch.testing.assert_close(contributions[:, layer].sum(-1), expected, rtol=1e-4, atol=1e-5)


def test_head_contributions_sum_to_the_attention_output_projection(tiny: ec.ModelBundle, prompts: list) -> None:
    acts = extract_batch(tiny, prompts)
    directions = _unit((tiny.shape.n_layers, tiny.shape.d_model), seed=9).float()
    contributions = head_contributions(tiny, acts["attn_z"], directions)
    assert contributions.shape == (len(prompts), tiny.shape.n_layers, tiny.shape.n_heads)
    layer = 2
    w = out_weight(tiny.adapter.attn_out(layer)).detach().float()  # [d_model, H*D] for Linear and GPT-2's Conv1D
    expected = (acts["attn_z"][:, layer] @ w.T) @ directions[layer]
    torch.testing.assert_close(contributions[:, layer].sum(-1), expected, rtol=1e-4, atol=1e-5)
    head = 1
    slice_ = slice(head * tiny.shape.head_dim, (head + 1) * tiny.shape.head_dim)
    written = acts["attn_z"][:, layer, slice_] @ tiny.adapter.head_out_weight(layer, head).detach().float().T
    torch.testing.assert_close(contributions[:, layer, head], written @ directions[layer], rtol=1e-4, atol=1e-5)


def test_directions_recover_planted_emotion_vectors() -> None:
    skeleton_prompts = emotion_prompts(load_skeletons("train")[:10])
    groups = complete_groups(skeleton_prompts)
    planted = _unit((6, 1, 16), seed=7).float()
    planted = planted - planted.mean(0, keepdim=True)
    torch.manual_seed(8)
    content = torch.randn(len(skeleton_prompts), 1, 16) * 0
    acts = torch.randn(len(skeleton_prompts), 1, 16) * 0.01
    for row in groups:
        content_g = torch.randn(1, 16) * 5
        for e, index in enumerate(row):
            acts[index] += content_g + planted[e]
    assert content.abs().sum() == 0
    torch.testing.assert_close(mean_differences(acts, groups), planted, atol=0.01, rtol=0)
    recovered = emotion_directions(acts, groups)
    cosine = (recovered * planted / planted.norm(dim=-1, keepdim=True)).sum(-1)
    assert torch.all(cosine > 0.99)
    cosines = recovered.transpose(0, 1) @ recovered.transpose(0, 1).transpose(1, 2)
    nearest = nearest_emotions(cosines)
    assert set(nearest[nearest["layer"] == 0]["emotion"]) == set(EMOTIONS)
    assert all(nearest["emotion"] != nearest["nearest"])


def _finite_dose_importance(tiny: ec.ModelBundle, text: str, reference: torch.Tensor, layer: int, w: torch.Tensor, kind: str) -> float:
    """(s(dose) - s(-dose)) / 2 dose with the dose added at one sublayer output, last token."""
    batch = ec.generation.encode(tiny, [text])
    module = tiny.adapter.attn(layer) if kind == "attn" else tiny.adapter.layer(layer)
    values = []
    for dose in (1e-2, -1e-2):

        def add(mod, args, output, dose=dose):
            hidden = ec.interventions.untuple(output).clone()
            hidden[:, -1] += dose * w.to(hidden.dtype)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        handle = module.register_forward_hook(add)
        with torch.no_grad(), ec.capture(tiny, ["resid_post"], [tiny.shape.n_layers - 1]) as c:
            tiny.model(**batch)
        handle.remove()
        final = tiny.adapter.final_norm()(c[("resid_post", tiny.shape.n_layers - 1)][0, -1])
        values.append(float(final @ reference.double()))
    return (values[0] - values[1]) / 2e-2


def test_gradient_sublayer_importance_matches_finite_doses(tiny: ec.ModelBundle) -> None:
    if tiny.adapter.spec.attn_out_norm is not None:
        pytest.skip("the attention output passes through a norm before the residual; checked on the post position only")
    n_layers, d = tiny.shape.n_layers, tiny.shape.d_model
    mid = _unit((6, n_layers, d), seed=9).float()
    post = _unit((6, n_layers, d), seed=10).float()
    reference = reference_directions(mid, post)
    mid, post = aligned_local_directions(mid, reference), aligned_local_directions(post, reference)
    text = ec.chat_prompt(tiny, neutral_prompts(load_skeletons("train")[:1])[0].user)
    gradient = importance_batch(tiny, [text], reference, mid, post)[0]  # [emotion, layer, 2]
    for emotion, layer in [(0, 0), (3, 1)]:
        for kind, column, dirs in (("attn", 0, mid), ("mlp", 1, post)):
            finite = _finite_dose_importance(tiny, text, reference[emotion], layer, dirs[emotion, layer], kind)
            assert gradient[emotion, layer, column].item() == pytest.approx(finite, rel=1e-2, abs=1e-4)
