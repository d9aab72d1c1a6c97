"""Generation: side-by-side rows, concurrency, seeded sampling, streaming, prompts."""

import threading

import pytest
import torch

import emo_core as ec
from emo_core.interventions import ComponentEdit, ResidualAddition, on_rows
from emo_core.scoring import Row, generate_rows
from tests.conftest import pushed

SETTINGS = ec.GenerationSettings(max_new_tokens=12)


@pytest.fixture
def prompt(tiny: ec.ModelBundle) -> str:
    return ec.chat_prompt(tiny, "I waited an hour for the bus\nIt never came.", "Keep the reply short.")


def test_side_by_side_rows_equal_separate_generations(tiny: ec.ModelBundle, prompt: str) -> None:
    ablation = ec.HeadAblation(((0, 1), (1, 2), (2, 0)))
    baseline, intervened = ec.side_by_side(tiny, prompt, SETTINGS, [ablation])
    assert baseline == ec.generate(tiny, [prompt], SETTINGS)[0]
    assert intervened == ec.generate(tiny, [prompt], SETTINGS, [ablation])[0]
    assert baseline.token_ids != intervened.token_ids


def test_rows_with_their_own_edits_get_the_replies_they_get_alone(tiny: ec.ModelBundle, prompt: str) -> None:
    """A batch whose rows each carry their own steering and ablations, as ``scoring.generate_rows`` builds it: the hooks
    apply every row's edits at once (and keep them from one decode step to the next), which must not mix rows."""
    d = tiny.shape.d_model
    per_row = [
        [ResidualAddition({1: torch.linspace(-1, 1, d)}, alpha=4.0)],
        [ec.NeuronAblation(((0, 3), (2, 5))), ResidualAddition({1: torch.linspace(1, -1, d)}, alpha=2.0, positions="all")],
        [ec.HeadAblation(((1, 2),)), ComponentEdit("mlp_post", 1, (0, 4), scale=1.0, add=torch.tensor([3.0, -3.0]), positions="last")],
        [],
    ]
    edits = [on_rows(edit, (i,)) for i, row in enumerate(per_row) for edit in row]
    alone = [ec.generate(tiny, [prompt], SETTINGS, row)[0] for row in per_row]
    assert ec.generate(tiny, [prompt] * len(per_row), SETTINGS, edits) == alone
    assert len({reply.token_ids for reply in alone}) > 1


def test_steered_rows_of_one_prompt_run_its_prefill_once_and_get_the_replies_they_get_alone(tiny: ec.ModelBundle, prompt: str) -> None:
    """Steering edits only a call's last position, so a shared prompt's tokens but the last run once for all its rows;
    an ablation edits every position, so its batch runs whole prompts."""
    other = ec.chat_prompt(tiny, "My cat ran away.", "Keep the reply short.")
    steer = [ResidualAddition({1: torch.linspace(-1, 1, tiny.shape.d_model)}, alpha=alpha) for alpha in (2.0, 4.0)]
    prompts, per_row = [prompt, prompt, other, prompt], [[steer[0]], [steer[1]], [steer[0]], []]
    width = ec.generation.encode(tiny, prompts)["input_ids"].shape[1]
    shapes: list[tuple[int, ...]] = []  # (rows, tokens) entering layer 0, call by call
    handle = tiny.adapter.layer(0).register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple((args[0] if args else kwargs["hidden_states"]).shape[:2])), with_kwargs=True
    )
    try:
        for rows, expected in ((per_row, [(2, width - 1), (4, 1)]), ([*per_row[:3], [ec.HeadAblation(((1, 2),))]], [(4, width)])):
            shapes.clear()
            edits = [on_rows(edit, (i,)) for i, row in enumerate(rows) for edit in row]
            together = ec.generate(tiny, prompts, SETTINGS, edits)
            assert shapes[: len(expected)] == expected
            alone = [ec.generate(tiny, [p], SETTINGS, row)[0] for p, row in zip(prompts, rows, strict=True)]
            assert [reply.token_ids for reply in together] == [reply.token_ids for reply in alone]
    finally:
        handle.remove()
    assert len({reply.token_ids for reply in together}) > 1


def test_concurrent_generations_each_get_what_they_get_alone(tiny: ec.ModelBundle, prompt: str) -> None:
    jobs = {
        "heads": [ec.HeadAblation(tuple((layer, h) for layer in range(3) for h in (0, 1)))],
        "steer": [ResidualAddition({1: torch.linspace(-1, 1, tiny.shape.d_model)}, alpha=4.0)],
        "none": [],
    }
    alone = {name: ec.generate(tiny, [prompt], SETTINGS, ivs) for name, ivs in jobs.items()}
    together: dict[str, list[ec.Reply]] = {}
    start = threading.Barrier(len(jobs))

    def run(name: str) -> None:
        start.wait()
        together[name] = [ec.generate(tiny, [prompt], SETTINGS, jobs[name]) for _ in range(3)]

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in jobs:
        assert all(result == alone[name] for result in together[name]), name
    assert len({alone[name][0].token_ids for name in jobs}) == 3


def test_seeded_sampling_is_reproducible_and_per_row(tiny: ec.ModelBundle, prompt: str) -> None:
    sampling = ec.GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1.5, top_p=1.0, seed=7)
    first = ec.generate(tiny, [prompt], sampling)[0]
    assert ec.generate(tiny, [prompt], sampling)[0] == first
    assert ec.side_by_side(tiny, prompt, sampling)[0] == first
    other_seed = ec.generate(tiny, [prompt], ec.GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1.5, top_p=1.0, seed=8))[
        0
    ]
    assert other_seed != first


def test_stream_ends_with_the_generated_text(tiny: ec.ModelBundle, prompt: str) -> None:
    texts = list(ec.stream_text(tiny, prompt, SETTINGS))
    assert texts and texts[-1] == ec.generate(tiny, [prompt], SETTINGS)[0].text


def test_empty_prompt_is_refused(tiny: ec.ModelBundle) -> None:
    with pytest.raises(ec.InvalidPromptError, match="empty"):
        ec.chat_prompt(tiny, "   ")


def test_chat_template_date_is_pinned(embedded: ec.ModelBundle) -> None:
    template = "{{ date_string }}|{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tokenizer = embedded.tokenizer
    original, tokenizer.chat_template = tokenizer.chat_template, template
    try:
        assert ec.chat_prompt(embedded, "hi").startswith(ec.generation.PINNED_DATE)
    finally:
        tokenizer.chat_template = original


def test_a_row_that_ends_early_leaves_the_other_rows_of_its_batch_as_they_are_alone(
    tiny: ec.ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One row meets its end-of-sequence token within its first steps while the others write on: in a batch, in any input
    order, every row gets the reply it gets alone, and the scoring path hands each reply back to its own row after its
    sort."""
    users = ["I waited an hour for the bus.", "My sister sent me a postcard.", "The shop was closed again.", "We won the quiz!"]
    prompts = [ec.chat_prompt(tiny, user) for user in users]
    free = [ec.generate(tiny, [p], SETTINGS)[0].token_ids for p in prompts]
    found = [
        (row, token)
        for row, ids in enumerate(free)
        for step, token in enumerate(ids[:6])
        if token not in ids[:step] and all(token not in other for i, other in enumerate(free) if i != row)
    ]
    assert found, "every early token of every reply also comes in another reply; pick other prompts"
    short, stop = found[0]
    monkeypatch.setattr(tiny.model.generation_config, "eos_token_id", stop)  # that row's token now ends it

    alone = [ec.generate(tiny, [p], SETTINGS)[0] for p in prompts]
    assert len(alone[short].token_ids) < len(free[short])
    assert all(alone[i].token_ids == free[i] for i in range(len(prompts)) if i != short)
    for order in (range(len(prompts)), [short, *(i for i in range(len(prompts)) if i != short)], reversed(range(len(prompts)))):
        order = list(order)
        together = ec.generate(tiny, [prompts[i] for i in order], SETTINGS)
        assert [reply.token_ids for reply in together] == [alone[i].token_ids for i in order], order
    shuffled = [2, 0, 3, 1]
    rows = [Row(prompts[i], "anger", (ResidualAddition({0: torch.zeros(tiny.shape.d_model)}, alpha=1.0),)) for i in shuffled]
    scored = generate_rows(tiny, rows, SETTINGS, batch_size=len(rows))
    assert [reply.token_ids for reply in scored] == [alone[i].token_ids for i in shuffled]


def test_a_reply_cannot_be_asked_for_more_tokens_than_it_may_have() -> None:
    with pytest.raises(ec.LimitError) as error:
        ec.GenerationSettings(max_new_tokens=8, min_new_tokens=9)
    assert str(error.value) == "At least 9 tokens cannot be asked of a reply of at most 8 tokens."


def test_padding_puts_the_fill_on_the_chosen_side_and_marks_only_real_tokens() -> None:
    from emo_core.generation import padded

    for left in (True, False):
        ids, mask = padded([[5, 6, 7], [8]], pad=0, left=left)
        assert mask.tolist() == ([[1, 1, 1], [0, 0, 1]] if left else [[1, 1, 1], [1, 0, 0]])
        assert ids.tolist() == ([[5, 6, 7], [0, 0, 8]] if left else [[5, 6, 7], [8, 0, 0]])


def test_token_by_token_decoding_writes_what_generate_writes_with_the_same_edits(tiny_llama: ec.ModelBundle) -> None:
    """On one family: the decode loop is the same for every family."""
    prompt = ec.chat_prompt(tiny_llama, "I lost my keys.")
    settings = ec.GenerationSettings(max_new_tokens=6, min_new_tokens=6)
    steer = ResidualAddition({1: torch.linspace(-1, 1, tiny_llama.shape.d_model, dtype=tiny_llama.dtype)}, alpha=3.0)
    prompts = [prompt, ec.chat_prompt(tiny_llama, "And the weather?")]
    steps = torch.stack(list(ec.iter_tokens(tiny_llama, prompts, settings, [steer])), dim=1)  # [rows, steps]
    steered = ec.generate(tiny_llama, prompts, settings, [steer])
    assert [tuple(row.tolist()) for row in steps] == [reply.token_ids for reply in steered]
    assert [reply.token_ids for reply in ec.generate(tiny_llama, prompts, settings)] != [reply.token_ids for reply in steered]


def test_a_streamed_text_carries_its_edits(tiny_llama: ec.ModelBundle) -> None:
    """On one family: the decode loop is the same for every family."""
    prompt = ec.chat_prompt(tiny_llama, "I lost my keys.")
    settings = ec.GenerationSettings(max_new_tokens=6, min_new_tokens=6)
    steer = ResidualAddition({1: torch.linspace(-1, 1, tiny_llama.shape.d_model, dtype=tiny_llama.dtype)}, alpha=3.0)
    (steered,) = ec.generate(tiny_llama, [prompt], settings, [steer])
    (plain,) = ec.generate(tiny_llama, [prompt], settings)
    assert steered.text != plain.text
    assert list(ec.stream_text(tiny_llama, prompt, settings, [steer]))[-1] == steered.text


def test_decoding_with_a_repetition_penalty_writes_what_transformers_writes(tiny: ec.ModelBundle, prompt: str) -> None:
    """A hook makes one of the prompt's tokens barely the model's favourite at every step; a penalty of 2 tips it over."""
    batch = ec.generation.encode(tiny, [prompt])
    favourite = int(batch["input_ids"][0, -3])

    def nudge(module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        others = output.logits[:, -1].clone()
        others[:, favourite] = -torch.inf
        output.logits[:, -1, favourite] = others.max(dim=-1).values + 0.1

    handle = tiny.model.register_forward_hook(nudge, with_kwargs=True)
    try:
        settings = {"max_new_tokens": 8, "min_new_tokens": 8, "no_repeat_ngram_size": 0}
        (plain,) = ec.generate(tiny, [prompt], ec.GenerationSettings(**settings, repetition_penalty=1.0))
        (ours,) = ec.generate(tiny, [prompt], ec.GenerationSettings(**settings, repetition_penalty=2.0))
        theirs = tiny.model.generate(**batch, **settings, do_sample=False, repetition_penalty=2.0, pad_token_id=0)
    finally:
        handle.remove()
    assert plain.token_ids == (favourite,) * 8 and favourite not in ours.token_ids
    assert ours.token_ids == tuple(theirs[0, batch["input_ids"].shape[1] :].tolist())


def test_a_reply_asked_for_one_token_writes_one_before_it_may_end(tiny_llama: ec.ModelBundle) -> None:
    eos = tiny_llama.tokenizer.eos_token_id
    prompt = ec.chat_prompt(tiny_llama, "Say nothing.")
    with pushed(tiny_llama, [[eos]]):
        (free,) = ec.generate(tiny_llama, [prompt], ec.GenerationSettings(max_new_tokens=6))
        (held,) = ec.generate(tiny_llama, [prompt], ec.GenerationSettings(max_new_tokens=6, min_new_tokens=1))
    assert free.token_ids == () and len(held.token_ids) == 1
