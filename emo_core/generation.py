"""Chat prompts and generation: greedy or seeded sampling, token streaming, side-by-side replies.

Generation uses its own decode loop over the model's KV cache (not ``model.generate``) so that
interventions are attached only for the duration of each forward call, every batch row samples
from its own seeded generator (row ``i`` of a batch equals a batch-1 run), and streaming needs no
extra thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from jinja2 import TemplateError
from transformers import (
    DynamicCache,
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    PreTrainedTokenizerBase,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from emo_core.classroom import WordGuard, choose_allowed
from emo_core.errors import InvalidPromptError, LimitError
from emo_core.fastpath import layout_choice, small_batch_linear
from emo_core.interventions import EditPlan, Intervention, applied, capture, on_rows
from emo_core.limits import check_reply_length, check_seed, check_text
from emo_core.models import ModelBundle

PINNED_DATE = "26 Jul 2024"  # some chat templates (Llama 3) insert today's date; pin it for reproducibility
BREAK = "\u200b"  # zero-width space: splits a control token typed in a message, so it is read as the characters it shows


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; the defaults are greedy and short enough to feel live on a laptop CPU."""

    max_new_tokens: int = 48
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    classroom_safe: bool = False  # block the listed slurs and profanity while decoding (``classroom.py``)

    def __post_init__(self) -> None:
        """Refuse a reply length or seed beyond ``emo_core.limits`` here, so the app, the CLI and scripts get one message."""
        check_reply_length(self.max_new_tokens)
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise LimitError(f"At least {self.min_new_tokens} tokens cannot be asked of a reply of at most {self.max_new_tokens} tokens.")
        check_seed(self.seed)


@dataclass(frozen=True)
class Reply:
    """One generated reply."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    states: torch.Tensor | None = field(default=None, compare=False)  # [n_tokens, k, d_model] when asked to observe layers


def as_text(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """``text`` with every control token written in it (``<|im_start|>``, ``<|endoftext|>``…) split by a zero-width space.

    The tokenizer turns such a string into its control token wherever it appears, so a typed ``<|im_start|>system``
    would open a real system turn; split, it is read as the characters it shows. Other text is unchanged.
    """
    controls = sorted((t.content for t in tokenizer.added_tokens_decoder.values() if t.special and len(t.content) > 1), key=len)
    if not controls:
        return text
    pattern = re.compile("|".join(re.escape(control) for control in reversed(controls)))
    while pattern.search(text):  # splitting one control token could leave a shorter one inside it
        text = pattern.sub(lambda match: match[0][0] + BREAK + match[0][1:], text)
    return text


def chat_prompt(bundle: ModelBundle, user: str, system: str | None = None) -> str:
    """The model's chat-template text for one user turn, ending with the assistant header.

    Templates without a system role get the system text prepended to the user turn; models without
    a chat template (GPT-2) get a plain "System/User/Assistant" transcript. The user turn is text:
    control tokens typed in it are split (``as_text``), and template syntax in it is not run.
    """
    if not user or not user.strip():
        raise InvalidPromptError("The prompt is empty; type a message for the model to answer.")
    check_text(user)
    tokenizer = bundle.tokenizer
    user = as_text(tokenizer, user)
    if tokenizer.chat_template is None:
        header = f"System: {system}\n" if system else ""
        return f"{header}User: {user}\nAssistant:"
    messages = [{"role": "user", "content": user}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, date_string=PINNED_DATE)
    except TemplateError:
        merged = [{"role": "user", "content": f"{system}\n\n{user}" if system else user}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True, date_string=PINNED_DATE)


def encode(bundle: ModelBundle, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Model inputs for templated prompts, on the model's device: left-padded ``input_ids``,
    ``attention_mask``, and ``position_ids`` that start at 0 at each row's first real token
    (without them, padding would shift positions and change a row's activations)."""
    if not prompts or any(not p for p in prompts):
        raise InvalidPromptError("The prompt is empty; type a message for the model to answer.")
    encoded = bundle.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    mask = encoded["attention_mask"]
    return {
        key: value.to(bundle.device)
        for key, value in (("input_ids", encoded["input_ids"]), ("attention_mask", mask), ("position_ids", left_padded_positions(mask)))
    }


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``position_ids`` of a left-padded batch: 0 at each row's first real token, as if it had no padding."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def padded(sequences: Sequence[Sequence[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of token lists padded on the left or on the right to the longest."""
    width = max(len(s) for s in sequences)
    ids, mask = [], []
    for s in sequences:
        fill = width - len(s)
        ids.append([pad] * fill + list(s) if left else list(s) + [pad] * fill)
        mask.append([0] * fill + [1] * len(s) if left else [1] * len(s) + [0] * fill)
    return torch.tensor(ids), torch.tensor(mask)


def prefix_cache(bundle: ModelBundle, prefix_ids: torch.Tensor, prefix_mask: torch.Tensor, owners: torch.Tensor) -> DynamicCache:
    """The KV cache of left-padded prefixes ``[prefixes, tokens]``, each run once, copied so that row ``i`` holds prefix ``owners[i]``."""
    device = bundle.device
    with torch.inference_mode():
        cache = bundle.model(
            input_ids=prefix_ids.to(device),
            attention_mask=prefix_mask.to(device),
            position_ids=left_padded_positions(prefix_mask).to(device),  # as ``encode`` gives them
            use_cache=True,
            logits_to_keep=1,
        ).cache
        cache.reorder_cache(owners.to(device))
    return cache


def continuation(prefix_mask: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Model inputs for right-padded tokens ``ids`` that continue each row's left-padded prefix (in a KV cache): the joint
    attention mask, and positions going on from the prefix's last real token. On ``prefix_mask``'s device."""
    device = prefix_mask.device
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.cat([prefix_mask, mask.to(device)], dim=1),
        "position_ids": prefix_mask.sum(dim=1, keepdim=True) + torch.arange(ids.shape[1], device=device),
    }


def _logits_processors(settings: GenerationSettings, prompt_len: int, eos_ids: list[int]) -> LogitsProcessorList:
    processors = LogitsProcessorList()
    if settings.min_new_tokens > 0 and eos_ids:
        processors.append(MinNewTokensLengthLogitsProcessor(prompt_len, settings.min_new_tokens, eos_ids))
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if settings.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(settings.no_repeat_ngram_size))
    if settings.do_sample:
        processors.append(TemperatureLogitsWarper(settings.temperature))
        processors.append(TopPLogitsWarper(settings.top_p))
    return processors


def _eos_ids(bundle: ModelBundle) -> list[int]:
    eos = bundle.model.generation_config.eos_token_id
    if eos is None:
        eos = bundle.tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])


_GUARDS: dict[int, WordGuard] = {}


def word_guard(bundle: ModelBundle) -> WordGuard:
    """The classroom word guard for the bundle's tokenizer (built once per tokenizer)."""
    key = id(bundle.tokenizer)
    if key not in _GUARDS:
        _GUARDS[key] = WordGuard(bundle.tokenizer, _eos_ids(bundle))
    return _GUARDS[key]


def _guarded(
    guard: WordGuard,
    tokens: torch.Tensor,
    scores: torch.Tensor,
    replies: torch.Tensor,
    finished: torch.Tensor,
    last_step: bool,
    settings: GenerationSettings,
    generators: Sequence[torch.Generator],
) -> torch.Tensor:
    """``tokens`` with every row's pick that would write a listed word replaced by its best allowed one (greedy), or by a
    fresh seeded sample among the allowed ones (``classroom.choose_allowed``). Rows whose pick is allowed keep it, so
    nothing changes where no listed word comes near."""
    out = tokens.clone()
    for i, token in enumerate(tokens.tolist()):
        if bool(finished[i]):
            continue
        ids = replies[i].tolist()

        def final_for(candidate: int) -> bool:
            return last_step or candidate in guard.eos_ids

        if guard.allows(ids, token, final_for(token)):
            continue
        if settings.do_sample:

            def pick(row: torch.Tensor, generator: torch.Generator = generators[i]) -> int:
                return int(torch.multinomial(row.softmax(dim=-1).cpu(), 1, generator=generator))
        else:

            def pick(row: torch.Tensor) -> int:
                return int(row.argmax())

        out[i] = choose_allowed(scores[i], ids, guard, pick, final_for)  # picks again, setting each refused token to -inf
    return out


def iter_tokens(
    bundle: ModelBundle,
    prompts: Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    interventions: Sequence[Intervention] = (),
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row (``[batch]``, pad for finished rows) until all rows stop.

    Interventions are attached only inside each forward call, so nothing stays hooked between
    yields, and an abandoned stream leaves the model clean.
    """
    return (tokens for tokens, _ in _decode(bundle, encode(bundle, prompts), settings, interventions))


def _shared_prefill(bundle: ModelBundle, batch: dict[str, torch.Tensor]) -> DynamicCache | None:
    """The KV cache of every prompt but its last token, run once per distinct prompt and copied to the rows that share it;
    ``None`` where no two rows share a prompt (or a prompt is a single token).

    Only for edits of the last position (steering): a batch of one prompt steered toward six emotions, or at several
    strengths, then runs the prompt once and only its last token per row.
    """
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if ids.shape[1] < 2 or not bool(mask[:, :-1].any(dim=1).all()):
        return None
    groups: dict[tuple[int, ...], int] = {}
    owner = [groups.setdefault((*ids[i].tolist(), *mask[i].tolist()), len(groups)) for i in range(len(ids))]
    if len(groups) == len(ids):
        return None
    first = [owner.index(group) for group in range(len(groups))]
    return prefix_cache(bundle, ids[first, :-1], mask[first, :-1], torch.tensor(owner))


class Picker:
    """Each step's next token of every row of one request: its logits processors over its own prompt and reply so far, a
    seeded generator per row (row ``i`` samples as a batch-1 run would), the classroom guard, and pad once a row has
    ended. ``generate`` and the shared live batch (``batching.py``) both pick through it, so a row picks alike in either."""

    def __init__(self, bundle: ModelBundle, input_ids: torch.Tensor, settings: GenerationSettings) -> None:
        self.settings = settings
        self.prompt_len = input_ids.shape[1]
        eos_ids = _eos_ids(bundle)
        self.pad_id = bundle.tokenizer.pad_token_id
        self.processors = _logits_processors(settings, self.prompt_len, eos_ids)
        self.generators = [torch.Generator(device="cpu").manual_seed(settings.seed) for _ in range(len(input_ids))]
        self.finished = torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
        self.eos_ids = frozenset(eos_ids)
        self.eos_tensor = torch.tensor(eos_ids, device=input_ids.device)
        self.guard = word_guard(bundle) if settings.classroom_safe else None
        self.sequence = input_ids
        self.step = 0

    @property
    def done(self) -> bool:
        """Every row has ended, or the reply length is reached."""
        return bool(self.finished.all()) or self.step >= self.settings.max_new_tokens

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        """The rows' next tokens ``[rows]`` from the last position's ``logits`` ``[rows, vocab]``; advances one step."""
        settings = self.settings
        with torch.inference_mode():
            scores = self.processors(self.sequence, logits.float())
            if settings.do_sample:
                probs = scores.softmax(dim=-1).cpu()
                tokens = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators, strict=True)])
                tokens = tokens.to(self.sequence.device)
            else:
                tokens = scores.argmax(dim=-1)
            if self.guard is not None:
                last_step = self.step == settings.max_new_tokens - 1
                replies = self.sequence[:, self.prompt_len :]
                tokens = _guarded(self.guard, tokens, scores, replies, self.finished, last_step, settings, self.generators)
        tokens = torch.where(self.finished, torch.full_like(tokens, self.pad_id), tokens)
        self.finished |= torch.isin(tokens, self.eos_tensor)
        self.sequence = torch.cat([self.sequence, tokens[:, None]], dim=1)
        self.step += 1
        return tokens


def first_inputs(
    bundle: ModelBundle, batch: dict[str, torch.Tensor], plan: EditPlan | None
) -> tuple[torch.Tensor, torch.Tensor, DynamicCache | None]:
    """The first forward call's ``input_ids``, ``position_ids`` and KV cache: the whole prompts, or only their last
    token over a cache of the shared prompts (``_shared_prefill``) when every edit acts on the last position."""
    input_ids, position_ids = batch["input_ids"], batch["position_ids"]
    if plan is None or plan.last_only:
        cache = _shared_prefill(bundle, batch)
        if cache is not None:
            return input_ids[:, -1:], position_ids[:, -1:], cache
    return input_ids, position_ids, None


def forward_step(
    bundle: ModelBundle,
    inputs: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    cache: DynamicCache | None,
    plan: EditPlan | None,
    observe: Sequence[int] = (),
) -> tuple[torch.Tensor, DynamicCache, torch.Tensor | None]:
    """One decoding forward call with ``plan``'s edits hooked only during it: the last position's logits ``[batch,
    vocab]``, the grown cache and, with ``observe`` (layers), the ``resid_post`` states there ``[batch, k, d_model]``."""
    layouts = layout_choice(bundle.model)  # measured once per process and model shape
    with (
        torch.inference_mode(),
        small_batch_linear(layouts),
        applied(bundle, plan) if plan is not None else nullcontext(),
        capture(bundle, ["resid_post"], layers=observe) if observe else nullcontext() as captured,
    ):
        out = bundle.model(
            input_ids=inputs,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    states = torch.stack([captured[("resid_post", layer)][:, -1] for layer in observe], dim=1) if observe else None
    return out.logits[:, -1, :], out.cache, states


def _decode(
    bundle: ModelBundle,
    batch: dict[str, torch.Tensor],
    settings: GenerationSettings,
    interventions: Sequence[Intervention],
    observe: Sequence[int] = (),
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield each step's tokens ``[batch]`` and, with ``observe`` (layers), the ``resid_post`` states that produced them."""
    attention_mask = batch["attention_mask"]
    picker = Picker(bundle, batch["input_ids"], settings)
    plan = EditPlan(bundle.adapter, interventions) if interventions else None  # its batch tensors are built once, not per step
    step_input, position_ids, cache = first_inputs(bundle, batch, plan)
    while not picker.done:
        # Hooks live only inside this forward call; with no interventions there is nothing to attach.
        logits, cache, states = forward_step(bundle, step_input, attention_mask, position_ids, cache, plan, observe)
        tokens = picker.pick(logits)
        yield tokens, states
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        position_ids = position_ids[:, -1:] + 1
        step_input = tokens[:, None]


def _grow(
    bundle: ModelBundle,
    batch: dict[str, torch.Tensor],
    settings: GenerationSettings,
    interventions: Sequence[Intervention],
    observe: Sequence[int],
    rows: list[list[int]],
    states: list[list[torch.Tensor]],
) -> Iterator[None]:
    """Decode, growing each row's token ids (end of sequence excluded) and the states that produced them in place, step by step."""
    done = [False] * len(rows)
    eos_ids = frozenset(_eos_ids(bundle))
    for tokens, step_states in _decode(bundle, batch, settings, interventions, observe):
        grow_rows(tokens, step_states, eos_ids, done, rows, states)
        yield


def grow_rows(
    tokens: torch.Tensor,
    step_states: torch.Tensor | None,
    eos_ids: frozenset[int],
    done: list[bool],
    rows: list[list[int]],
    states: list[list[torch.Tensor]],
) -> None:
    """Add one step's ``tokens`` (and the ``step_states`` that produced them) to every row not ``done``, in place; a row's
    end of sequence marks it done and is not kept, and an empty reply keeps the state that ended it."""
    for i, token in enumerate(tokens.tolist()):
        if done[i]:
            continue
        done[i] = token in eos_ids
        if step_states is not None and (not done[i] or not rows[i]):
            states[i].append(step_states[i])
        if not done[i]:
            rows[i].append(token)


def replies_of(bundle: ModelBundle, rows: list[list[int]], states: list[list[torch.Tensor]], prompt_len: int) -> list[Reply]:
    """The replies of rows' token ids so far (end of sequence excluded) and the states that produced them."""
    return [
        Reply(bundle.tokenizer.decode(ids, skip_special_tokens=True).strip(), tuple(ids), prompt_len, torch.stack(kept) if kept else None)
        for ids, kept in zip(rows, states, strict=True)
    ]


def generate(
    bundle: ModelBundle,
    prompts: Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    interventions: Sequence[Intervention] = (),
    observe: Sequence[int] = (),
) -> list[Reply]:
    """Replies for a batch of templated prompts (see ``chat_prompt``), one per row.

    With ``observe`` (layers), each reply carries the ``resid_post`` states at those layers that produced
    its tokens (``Reply.states``, ``[n_tokens, k, d_model]``; one state for an empty reply).
    """
    batch = encode(bundle, prompts)
    rows: list[list[int]] = [[] for _ in prompts]
    states: list[list[torch.Tensor]] = [[] for _ in prompts]
    for _ in _grow(bundle, batch, settings, interventions, observe, rows, states):
        pass
    return replies_of(bundle, rows, states, batch["input_ids"].shape[1])


def stream_replies(
    bundle: ModelBundle,
    prompts: Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    interventions: Sequence[Intervention] = (),
    observe: Sequence[int] = (),
) -> Iterator[list[Reply]]:
    """Every row's reply so far after each decoding step, for a live UI: each text is decoded from all of the
    row's tokens so far (redraw it; never append it). The last item equals ``generate``'s result."""
    batch = encode(bundle, prompts)
    rows: list[list[int]] = [[] for _ in prompts]
    states: list[list[torch.Tensor]] = [[] for _ in prompts]
    for _ in _grow(bundle, batch, settings, interventions, observe, rows, states):
        yield replies_of(bundle, rows, states, batch["input_ids"].shape[1])


def stream_text(
    bundle: ModelBundle,
    prompt: str,
    settings: GenerationSettings = GenerationSettings(),
    interventions: Sequence[Intervention] = (),
) -> Iterator[str]:
    """Yield the growing reply text of one prompt after each token (the whole text so far, for redrawing)."""
    for (reply,) in stream_replies(bundle, [prompt], settings, interventions):
        yield reply.text


def side_by_side(
    bundle: ModelBundle,
    prompt: str,
    settings: GenerationSettings = GenerationSettings(),
    interventions: Sequence[Intervention] = (),
) -> tuple[Reply, Reply]:
    """The untouched reply and the intervened reply of one prompt, generated as two rows of one batch."""
    targeted = [on_rows(intervention, (1,)) for intervention in interventions]
    baseline, intervened = generate(bundle, [prompt, prompt], settings, targeted)
    return baseline, intervened
