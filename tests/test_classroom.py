"""Classroom-safe decoding: the blocked-word list, whole-word matching, and the decode-time guard (tokenizer only, no model run)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from emo_core import classroom as cr
from emo_core import models

ORDINARY = [
    "assess", "assume", "assassin", "class", "classic", "bass", "passion", "hello", "shell", "shellfish", "cockpit",
    "cocktail", "cockatoo", "cocoon", "therapist", "Scunthorpe", "grape", "Dickens", "Dickinson", "spicy", "spice",
    "injunction", "niggardly", "Wankel", "bastardize", "shiitake", "Homo", "cumulative", "title", "Japan", "Japanese",
    "Yiddish", "Pakistan", "retardant", "button", "analysis", "Pissarro", "raccoon", "titanic", "document", "scrap",
    "damn", "hell", "crap", "stupid", "idiot", "hate", "disgusting", "gross", "angry",
]  # fmt: skip
BLOCKED = [
    "fuck", "Fucking", "FUCKER", "motherfuckers", "shit", "shitty", "bullshit", "cunt", "sluttery", "slutty", "sluts",
    "whores", "bitches", "nigger", "niggas", "faggots", "retarded", "spics", "dick's", "fuck's", "Asshole", "twats",
]  # fmt: skip
SPLIT_CHARS = "é🙂𝄞"  # two, four and four bytes; the tokenizer splits some across several tokens


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Vocabulary-sized tensor ops here are tiny; torch's thread pool only slows them down on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(request: pytest.FixtureRequest) -> PreTrainedTokenizerBase:
    """The embedded model's tokenizer, read from its saved copy when there is one (else through the `embedded` fixture)."""
    saved = models.cache_root() / "models" / models.EMBEDDED_NAME
    if (saved / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(saved)
    return request.getfixturevalue("embedded").tokenizer


@pytest.fixture(scope="module")
def guard(tokenizer: PreTrainedTokenizerBase) -> cr.WordGuard:
    return cr.WordGuard(tokenizer)


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)


def entries() -> list[str]:
    lines = (line.strip() for line in cr.WORD_LIST_PATH.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- The word list ---


def test_the_list_parses_into_lowercase_entries_without_duplicates() -> None:
    listed = entries()
    words = cr.blocked_words()
    assert 100 <= len(listed) <= 250
    assert len(listed) == len(set(listed)) == len({entry.lstrip("!").rstrip("*") for entry in listed})
    assert all(re.fullmatch(r"!?[a-z]+('[a-z]+)*\*?", entry) for entry in listed)
    assert len(words.exact) + len(words.stems) + len(words.allowed) + len(words.allowed_stems) == len(listed)
    assert cr.blocked_words() is words  # read once


def test_no_entry_is_redundant() -> None:
    """Each blocked entry blocks something that the rest of the list would let through."""
    words = cr.blocked_words()
    for word in words.exact:
        assert not cr.WordList(words.exact - {word}, words.stems, words.allowed, words.allowed_stems).blocks(word), word
    for stem in words.stems:
        assert not cr.WordList(words.exact, words.stems - {stem}, words.allowed, words.allowed_stems).blocks(stem), stem


def test_allowed_entries_are_not_blocked_but_would_be_without_the_allow_line() -> None:
    words = cr.blocked_words()
    unallowed = cr.WordList(words.exact, words.stems)
    for entry in words.allowed | words.allowed_stems:
        forms = [entry] if entry in words.allowed else [entry, entry + "s", entry + "ly"]
        for form in forms:
            assert not cr.is_blocked(form) and not cr.is_blocked(form.capitalize()), form
        assert unallowed.blocks(entry), entry


@pytest.mark.parametrize("word", ORDINARY)
def test_ordinary_words_are_not_blocked(word: str) -> None:
    assert not cr.is_blocked(word)


@pytest.mark.parametrize("word", BLOCKED)
def test_listed_words_and_their_inflections_are_blocked(word: str) -> None:
    assert cr.is_blocked(word)


def test_blocked_in_finds_whole_words_in_any_case() -> None:
    assert cr.blocked_in("") == []
    assert cr.blocked_in(" ".join(ORDINARY)) == []
    assert cr.blocked_in("What the FUCK, you Bitch. fuck!") == ["fuck", "bitch"]  # each once, in order, lowercased
    assert cr.blocked_in("shit-faced, (twat), dick's 'cunt' fuck2 fuckñ") == ["shit", "twat", "dick's", "cunt", "fuck"]
    assert cr.blocked_in("Scunthorpe's classic cockpit; spicy spice, a therapist's grapes, bassist") == []
    assert cr.blocked_in("spicy") == [] and cr.blocked_in("spic") == ["spic"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Fuck*", "lowercase letters"),
        ("f*ck", "lowercase letters"),
        ("fu2ck", "lowercase letters"),
        ("'tis", "lowercase letters"),
        ("dick\ndick", "already listed on line 3"),
        ("wank*\n!wank*", "already listed on line 3"),
        ("dog'*", "lowercase letters"),
        ("don't*", "apostrophe"),
        ("!grape", "allows nothing"),
    ],
)
def test_a_bad_line_is_named(text: str, problem: str) -> None:
    with pytest.raises(cr.WordListError, match=problem) as caught:
        cr.parse_word_list("# header\n\n" + text, source="test.txt")
    assert "test.txt, line " in str(caught.value)


# --- The guard ---


def argmax(scores: torch.Tensor) -> int:
    return int(scores.argmax())


def preferring(size: int, ranked: list[int]) -> torch.Tensor:
    """Scores that rank the given tokens first, in order, and every other token far below."""
    scores = torch.zeros(size)
    for rank, token in enumerate(ranked):
        scores[token] = 100.0 - rank
    return scores


Scorer = Callable[[int, list[int]], torch.Tensor]


def run_loop(
    guard: cr.WordGuard, scores_for: Scorer, max_new: int, check_fallback: bool = False, pick: Callable[[torch.Tensor], int] = argmax
) -> list[int]:
    """A decode loop that appends only tokens the guard allows; the last token is checked as final."""
    reply: list[int] = []
    for step in range(max_new):
        last = step == max_new - 1
        if check_fallback:  # from every state the loop reaches, some fallback token is allowed, final or not
            fallbacks = guard.safe_tokens + guard.escape_tokens(reply)
            assert any(guard.allows(reply, token, False) for token in fallbacks)
            assert any(guard.allows(reply, token, True) for token in fallbacks)
        token = cr.choose_allowed(scores_for(step, reply), reply, guard, pick, lambda token, last=last: last or token in guard.eos_ids)
        reply.append(token)
        if token in guard.eos_ids:
            break
    return reply


def test_the_guard_refuses_a_stem_as_soon_as_it_is_reached(tokenizer: PreTrainedTokenizerBase, guard: cr.WordGuard) -> None:
    start = encode(tokenizer, "I'm going to eat your rotten")
    sl, ut, ty = encode(tokenizer, " sl")[0], encode(tokenizer, "ut")[0], encode(tokenizer, "ty")[0]
    assert guard.allows(start, sl, False)  # " sl" can still become "slime"
    assert not guard.allows(start + [sl], ut, False)  # "slut" starts the stem slut*: every continuation is blocked
    assert guard.allows(start + [sl], encode(tokenizer, "ime")[0], False)
    assert guard.allows(start + [sl], ty, False)  # "slty" is no listed word


def test_greedy_decoding_steers_around_a_forced_slur(tokenizer: PreTrainedTokenizerBase, guard: cr.WordGuard) -> None:
    intent = [*encode(tokenizer, " slut"), *encode(tokenizer, "ty"), *encode(tokenizer, "."), *encode(tokenizer, " bitch")]
    assert decode(tokenizer, intent) == " slutty. bitch"

    def scores_for(step: int, reply: list[int]) -> torch.Tensor:
        """The model wants the intended token now, then the intended ones after it, then those before it."""
        return preferring(len(tokenizer), intent[step:] + intent[:step])

    reply = run_loop(guard, scores_for, max_new=len(intent), check_fallback=True)
    text = decode(tokenizer, reply)
    assert text.startswith(" sl") and cr.blocked_in(text) == []  # " sl" was taken, "ut" and "itch" were steered around
    assert "slut" not in text.lower() and "bitch" not in text.lower()
    scores = preferring(len(tokenizer), intent)
    before = scores.clone()
    cr.choose_allowed(scores, encode(tokenizer, " sl"), guard, argmax, lambda token: False)
    assert torch.equal(scores, before)  # the caller's scores are left as they were


def test_a_blocked_whole_word_may_go_on_but_not_end(tokenizer: PreTrainedTokenizerBase, guard: cr.WordGuard) -> None:
    reply = encode(tokenizer, "That is a sp") + encode(tokenizer, "ic")
    assert decode(tokenizer, reply).endswith(" spic")
    period, e, s = (encode(tokenizer, piece)[0] for piece in (".", "e", "s"))
    assert not guard.allows(reply, period, False)  # completes "spic"
    assert not guard.allows(reply, s, True)  # "spics"
    assert not guard.allows(reply, tokenizer.eos_token_id, False)  # an end-of-sequence token is always final
    assert guard.allows(reply, e, True)  # "spice"
    assert e in guard.escape_tokens(reply) and s not in guard.escape_tokens(reply)
    apostrophe = encode(tokenizer, "'")[0]
    assert not guard.allows(encode(tokenizer, " dick"), apostrophe, False)  # every "dick'…" holds the part "dick"


def test_an_allowed_word_may_pass_through_a_stem_only_when_one_token_can_finish_it(
    tokenizer: PreTrainedTokenizerBase, guard: cr.WordGuard
) -> None:
    nig, ga = encode(tokenizer, " nig")[0], encode(tokenizer, "ga")[0]
    rd = guard.letter_tokens.get("rd") or guard.letter_tokens["rdly"]
    assert guard.allows([nig], ga, False)  # "nigga" may still become "niggard"
    assert not guard.allows([nig], ga, True)
    assert guard.allows([nig, ga], rd, True)
    assert guard.escape_tokens([nig, ga]) and all(
        cr.blocked_in(decode(tokenizer, [nig, ga, token])) == [] for token in guard.escape_tokens([nig, ga])
    )
    assert not guard.allows([nig, ga], encode(tokenizer, "s")[0], False)


def test_the_guard_reads_back_past_its_window_and_sees_split_characters(tokenizer: PreTrainedTokenizerBase) -> None:
    guard = cr.WordGuard(tokenizer, window=2)
    slu, t = [guard.letter_tokens[letter] for letter in "slu"], guard.letter_tokens["t"]
    assert decode(tokenizer, encode(tokenizer, " a") + slu + [t]) == " aslut"
    assert guard.allows(encode(tokenizer, " a") + slu, t, False)  # "aslut" is no listed word: the "a" out of the window counts
    assert not guard.allows(encode(tokenizer, " ") + slu, t, False)  # "slut", with its start out of the window
    assert not guard.allows(slu, t, False)  # "slut" from the reply's start
    split = [token for char in SPLIT_CHARS for token in encode(tokenizer, char)]
    assert len(split) > len(SPLIT_CHARS)  # some characters take more than one token
    cun = [guard.letter_tokens[letter] for letter in "cun"]
    for cut in range(len(split) + 1):  # a half-decoded character before the word is a separator, as the whole one is
        assert guard.allows(split[:cut] + cun[:2], cun[2], False)
        assert not guard.allows(split[:cut] + cun, t, False)


def test_tokens_outside_the_vocabulary_are_refused(tokenizer: PreTrainedTokenizerBase, guard: cr.WordGuard) -> None:
    assert not guard.allows([], len(tokenizer), False) and not guard.allows([], -1, True)
    assert guard.allows([], encode(tokenizer, " Hello")[0], False)


def test_the_fallback_answers_when_every_try_is_refused(tokenizer: PreTrainedTokenizerBase, guard: cr.WordGuard) -> None:
    reply = encode(tokenizer, "You are a sl")
    refused = [encode(tokenizer, piece)[0] for piece in ("ut", "uts", "utz")]
    assert len(set(refused)) == 3 and not any(guard.allows(reply, token, False) for token in refused)
    scores = preferring(len(tokenizer), refused + encode(tokenizer, " and"))
    token = cr.choose_allowed(scores, reply, guard, argmax, lambda token: False, max_tries=len(refused))
    assert token == encode(tokenizer, " and")[0]  # the best-scored safe token
    only_refused = torch.full((len(tokenizer),), -torch.inf)
    only_refused[refused] = 1.0
    token = cr.choose_allowed(only_refused, reply, guard, argmax, lambda token: False)
    assert token in guard.safe_tokens and cr.blocked_in(decode(tokenizer, reply + [token])) == []
    spic = encode(tokenizer, "That is a sp") + encode(tokenizer, "ic")
    last = cr.choose_allowed(preferring(len(tokenizer), encode(tokenizer, ".")), spic, guard, argmax, lambda token: True, max_tries=1)
    assert last in guard.escape_tokens(spic) and cr.blocked_in(decode(tokenizer, spic + [last])) == []


def test_a_reply_that_already_holds_a_listed_word_cannot_be_finished(tokenizer: PreTrainedTokenizerBase, guard: cr.WordGuard) -> None:
    reply = encode(tokenizer, "You fucking idiot")
    with pytest.raises(cr.NoSafeTokenError):
        cr.choose_allowed(torch.zeros(len(tokenizer)), reply, guard, argmax, lambda token: True)


# --- The guarantee, on random token sequences ---


@pytest.fixture(scope="module")
def pools(tokenizer: PreTrainedTokenizerBase) -> dict[str, list[list[int]]]:
    """Token chunks: listed words (with and without a leading space, capitalised, split into pieces), ordinary words, separators."""
    rng = random.Random(0)
    words = cr.blocked_words()
    forms = sorted(words.exact) + [stem + ending for stem in sorted(words.stems) for ending in ("", "s", "ing", "ty")]
    listed: list[list[int]] = []
    for form in filter(cr.is_blocked, forms):
        for variant in rng.sample([form, " " + form, form.capitalize(), " " + form.capitalize(), " " + form.upper()], 2):
            listed.append(encode(tokenizer, variant))
            cuts = sorted(rng.sample(range(1, len(variant)), min(2, len(variant) - 1)))
            pieces = [variant[i:j] for i, j in zip([0, *cuts], [*cuts, len(variant)], strict=True)]
            listed.append([token for piece in pieces for token in encode(tokenizer, piece)])
    ordinary = [encode(tokenizer, prefix + word) for word in ORDINARY for prefix in ("", " ")]
    separators = [encode(tokenizer, text) for text in (" ", ".", ",", "!", "?", "'", "'s", " '", "\n", "-", "...", *SPLIT_CHARS)]
    separators += [[token] for char in SPLIT_CHARS for token in encode(tokenizer, char)]  # halves of characters
    return {"listed": listed, "ordinary": ordinary, "separators": separators}


@pytest.fixture(scope="module")
def lure(pools: dict[str, list[list[int]]]) -> torch.Tensor:
    """Every token that occurs in a listed word's chunks."""
    return torch.tensor(sorted({token for part in pools["listed"] for token in part}))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_guarded_decoding_never_emits_a_listed_word(
    tokenizer: PreTrainedTokenizerBase, guard: cr.WordGuard, pools: dict[str, list[list[int]]], lure: torch.Tensor, data: st.DataObject
) -> None:
    chunk = st.one_of(
        st.sampled_from(pools["listed"]),
        st.sampled_from(pools["ordinary"]),
        st.sampled_from(pools["separators"]),
        st.integers(0, len(tokenizer) - 1).map(lambda token: [token]),
    )
    intent = [token for part in data.draw(st.lists(chunk, min_size=2, max_size=12), label="chunks") for token in part]
    max_new = data.draw(st.integers(max(1, len(intent) - 3), len(intent) + 2), label="max_new")  # the limit often cuts a word
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    sample = data.draw(st.booleans(), label="sample")  # else greedy
    generator = torch.Generator().manual_seed(seed)

    def scores_for(step: int, reply: list[int]) -> torch.Tensor:
        """The drawn token first, then tokens of listed words (in random order), then everything else."""
        scores = torch.rand(len(tokenizer), generator=generator)
        scores[lure] += 5.0 + torch.rand(len(lure), generator=generator)
        if step < len(intent):
            scores[intent[step]] = 10.0
        return scores

    def sampled(scores: torch.Tensor) -> int:
        """A seeded sample from softmax(3 * scores), by the Gumbel-max trick (refused tokens at -inf are never drawn)."""
        noise = torch.rand(scores.shape, generator=generator).clamp_min(1e-12)
        return int((3.0 * scores - torch.log(-torch.log(noise))).argmax())

    reply = run_loop(guard, scores_for, max_new, check_fallback=True, pick=sampled if sample else argmax)
    assert len(reply) == max_new or reply[-1] in guard.eos_ids
    assert cr.blocked_in(decode(tokenizer, reply)) == []
