"""Is a reply still a reply? Flags the token soup and the stock phrases that over-strong steering produces.

A reply is degenerate when a reader would call it broken: it is empty or mostly symbols; it has a run of
punctuation ("?!?!"); it stretches a word ("wooooo"); it repeats one word, or says a phrase of two or three words
three times or more; too many of its letters are in strings that are not English words; or, given its scenario, it
does not answer it (its MiniLM embedding is further from the scenario's than ``MIN_RELEVANCE`` allows) or does not read
as language in reply to it (the built-in model, unsteered, finds its words more surprising than ``MAX_SURPRISAL``
allows: word salad and stock phrases the words around them do not predict). The word list
is the vocabulary of the judge's MiniLM tokenizer (about 20,000 whole English words), so no extra data is needed.
The thresholds were chosen on ``datasets/fluency_dev.jsonl``; ``datasets/fluency_test.jsonl`` only measures them
(``measure``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch

from emo_core.errors import EmoCoreError
from emo_core.generation import chat_prompt, padded
from emo_core.judge import DATASET_DIR, minilm_encoder, minilm_model_dir
from emo_core.models import ModelBundle, load_model
from emo_core.scenarios import NEUTRAL_SYSTEM

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
MAX_WORD_RUN = 3
MIN_DISTINCT_BIGRAMS = 0.5
MIN_LETTER_SHARE = 0.6
MAX_NONWORD_SHARE = 0.3
LONE_LETTERS = frozenset({"a", "i"})
PUNCTUATION_RUN = re.compile(r"[!?]{3,}|[^\w\s'\".,!?]{3,}|[.,;:]{4,}")  # "?!?", "***", "....", not "..." or "!?"
ELONGATED = re.compile(r"([A-Za-z])\1{2,}")  # a letter three times in a row, which no English word has
MAX_PHRASE_REPEATS = 2  # a phrase of two or three words may come back once; a third time reads as a stuck record
MIN_RELEVANCE = 0.25  # cosine of the reply's and the scenario's MiniLM embeddings; below it the reply ignores the scenario
MAX_SURPRISAL = 4.75  # mean negative log-likelihood (nats per token) of the reply given its scenario, built-in model
MIN_RELEVANCE_WORDS = 6  # shorter replies ("Oh no, I'm so sorry!") answer by tone and are held to neither
SURPRISAL_BATCH = 32
FUNCTION_WORDS = frozenset(
    "a an the and or but so of to in on at for with it its is are was were be i i'm me my you you're your he she they "
    "we that this what not no do don't just".split()
)
DEV_PATH = DATASET_DIR / "fluency_dev.jsonl"
TEST_PATH = DATASET_DIR / "fluency_test.jsonl"


@cache
def english_words() -> frozenset[str]:
    """Whole-word entries of the MiniLM (BERT uncased) vocabulary."""
    lines = (minilm_model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(w for w in lines if w.isalpha() and not w.startswith("##"))


def _longest_run(words: list[str]) -> int:
    longest = run = 1
    for previous, current in zip(words, words[1:], strict=False):
        run = run + 1 if current == previous else 1
        longest = max(longest, run)
    return longest


def _nonword_share(words: list[str]) -> float:
    """Share of the letters in non-words: unknown words (names in Title case excepted) and lone letters other than a and I."""
    vocabulary = english_words()
    unknown = 0
    for word in words:
        lower = word.lower()
        if word.istitle() and len(word) > 1:
            continue
        if (len(lower) == 1 and lower not in LONE_LETTERS) or lower.split("'")[0] not in vocabulary:
            unknown += len(word)
    return unknown / sum(len(w) for w in words)


def _repeats_a_phrase(lowered: list[str]) -> bool:
    """True when a phrase of two or three words, not made of function words only, comes more than
    ``MAX_PHRASE_REPEATS`` times."""
    for n in (2, 3):
        counts = Counter(tuple(lowered[i : i + n]) for i in range(len(lowered) - n + 1))
        if any(count > MAX_PHRASE_REPEATS and not FUNCTION_WORDS.issuperset(gram) for gram, count in counts.items()):
            return True
    return False


def degenerate_reason(text: str) -> str | None:
    """Why ``text`` is not a fluent reply, or ``None`` when it reads as language (its scenario aside: ``degenerate_reasons``)."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    letters = sum(ch.isalpha() or ch.isspace() for ch in stripped)
    if letters / len(stripped) < MIN_LETTER_SHARE:
        return "mostly symbols"
    if PUNCTUATION_RUN.search(stripped):
        return "punctuation run"
    words = WORD.findall(stripped)
    if not words:
        return "no words"
    if any(ELONGATED.search(word) for word in words):
        return "elongated word"
    lowered = [w.lower() for w in words]
    if _longest_run(lowered) > MAX_WORD_RUN:
        return "repeated word"
    bigrams = list(zip(lowered, lowered[1:], strict=False))
    if len(bigrams) >= 8 and len(set(bigrams)) / len(bigrams) < MIN_DISTINCT_BIGRAMS or _repeats_a_phrase(lowered):
        return "repeated phrase"
    if len(words) >= 4 and _nonword_share(words) > MAX_NONWORD_SHARE:
        return "non-words"
    return None


def relevance(replies: Sequence[str], scenarios: Sequence[str]) -> np.ndarray:
    """Cosine similarity of each reply's MiniLM embedding to its scenario's: how much the reply is about the scenario."""
    encoder = minilm_encoder()
    return np.sum(encoder.embed(list(replies)) * encoder.embed(list(scenarios)), axis=1)


@cache
def _reference() -> ModelBundle:
    """The built-in model, unsteered, as the reader whose surprise measures fluency (whatever model wrote the reply)."""
    return load_model("default")


def surprisal(replies: Sequence[str], scenarios: Sequence[str]) -> np.ndarray:
    """Mean negative log-likelihood per token (nats) of each reply as the built-in model's answer to its scenario
    (the emotion-free chat prompt); an empty reply scores ``inf``. Texts of like length share a batch, so little of a
    batch is padding, and only the reply's positions go through the output layer, so a batch never holds the
    vocabulary's logits for its prompts."""
    bundle = _reference()
    tokenizer, decoder, head = bundle.tokenizer, bundle.model.get_decoder(), bundle.model.get_output_embeddings()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prompts = [tokenizer(chat_prompt(bundle, s, NEUTRAL_SYSTEM), add_special_tokens=False).input_ids for s in scenarios]
    answers = [tokenizer(r, add_special_tokens=False).input_ids for r in replies]
    order = sorted(range(len(replies)), key=lambda i: len(prompts[i]) + len(answers[i]))
    result = np.full(len(replies), np.inf)
    for start in range(0, len(order), SURPRISAL_BATCH):
        chunk = order[start : start + SURPRISAL_BATCH]
        ids, mask = padded([prompts[i] + answers[i] for i in chunk], pad, left=False)
        with torch.inference_mode():
            hidden = decoder(input_ids=ids.to(bundle.device), attention_mask=mask.to(bundle.device)).last_hidden_state
            for row, i in enumerate(chunk):
                p, a = len(prompts[i]), answers[i]
                if a:
                    logprobs = torch.log_softmax(head(hidden[row, p - 1 : p + len(a) - 1]).float(), dim=-1)
                    result[i] = float(-logprobs.gather(1, torch.tensor(a, device=logprobs.device)[:, None]).mean())
    return result


def degenerate_reasons(replies: Sequence[str], scenarios: Sequence[str] | None = None) -> list[str | None]:
    """``degenerate_reason`` of each reply and, where its scenario is given (a non-empty string) and the reply has at
    least ``MIN_RELEVANCE_WORDS`` words, "ignores the scenario" when its ``relevance`` is under ``MIN_RELEVANCE`` and
    "does not read as a reply" when its ``surprisal`` is over ``MAX_SURPRISAL``."""
    reasons = [degenerate_reason(text) for text in replies]
    if scenarios is None:
        return reasons
    checked = [i for i, (reason, scenario) in enumerate(zip(reasons, scenarios, strict=True)) if reason is None and scenario]
    checked = [i for i in checked if len(WORD.findall(replies[i])) >= MIN_RELEVANCE_WORDS]
    if checked:
        near = relevance([replies[i] for i in checked], [scenarios[i] for i in checked])
        for i in (i for i, score in zip(checked, near, strict=True) if score < MIN_RELEVANCE):
            reasons[i] = "ignores the scenario"
        on_topic = [i for i, score in zip(checked, near, strict=True) if score >= MIN_RELEVANCE]  # only these need the model
        if on_topic:
            surprise = surprisal([replies[i] for i in on_topic], [scenarios[i] for i in on_topic])
            for i in (i for i, score in zip(on_topic, surprise, strict=True) if score > MAX_SURPRISAL):
                reasons[i] = "does not read as a reply"
    return reasons


def is_degenerate(text: str) -> bool:
    """True when ``degenerate_reason`` finds a reason."""
    return degenerate_reason(text) is not None


def read_fluency_set(path: Path) -> list[dict]:
    """Records of a labelled fluency file: ``scenario``, ``reply``, ``label`` (fluent or broken) and ``why``."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if any(record.get("label") not in ("fluent", "broken") or not isinstance(record.get("reply"), str) for record in records):
        raise EmoCoreError(f"{path}: every record needs a 'reply' and a 'label' of fluent or broken.")
    return records


def measure(path: Path = TEST_PATH) -> dict:
    """The check's precision and recall at calling a reply broken, on replies a reader labelled (``fluency_test.jsonl``:
    none of them chose a threshold), with the counts and the recall per kind of breakage."""
    records = read_fluency_set(path)
    flagged = np.array([r is not None for r in degenerate_reasons([r["reply"] for r in records], [r["scenario"] for r in records])])
    broken = np.array([r["label"] == "broken" for r in records])
    kinds = sorted({r["why"] for r in records if r["label"] == "broken"})
    return {
        "precision": float((flagged & broken).sum() / max(flagged.sum(), 1)),
        "recall": float((flagged & broken).sum() / max(broken.sum(), 1)),
        "fluent": int((~broken).sum()),
        "broken": int(broken.sum()),
        "recall_by_kind": {
            kind: float(np.mean([f for f, r in zip(flagged, records, strict=True) if r["label"] == "broken" and r["why"] == kind]))
            for kind in kinds
        },
    }
