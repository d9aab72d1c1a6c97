"""One part: what switching one head or neuron off does to each emotion, the part at work on a scenario word by word, and
the emotion in the model layer by layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from emo_core.baselines import Baseline
from emo_core.causal import part_profile
from emo_core.generation import GenerationSettings, Reply, generate
from emo_core.interventions import Intervention, touched_layers
from emo_core.models import ModelBundle
from emo_core.part_activity import TextTrace, head_pattern, head_writes, neuron_activation, neuron_leaning, trace
from emo_core.reading import unit_directions
from emo_core.store import CacheError
from ui import glossary, live, live_charts, part_view, tour
from ui.data import model_bundle, page_results
from ui.pages import GOTO, KNOCKOUT, PART
from ui.replies import plain
from ui.run import BASELINE, KNOCKOUT_METHOD, KNOCKOUT_STRENGTH, run_query
from ui.run import PART as PART_KEY
from ui.state import SELECTION, apply, current, note_problems, show_problems, write_link

WORD, TYPED, TYPED_PROBLEM = "part_word", "part_typed", "part_typed_problem"


@st.cache_resource(max_entries=8, show_spinner=False)
def written(key: str, _bundle: ModelBundle, prompt: str, _shared: Sequence[Intervention], _settings: GenerationSettings) -> Reply:
    """The reply to ``prompt`` (``key`` names the model, prompt, emotion, baseline and decoding): replies are
    deterministic for a setting, so every session shares them, and a class opening one link generates once."""
    return generate(_bundle, [prompt], _settings, _shared)[0]


@st.cache_resource(max_entries=4, show_spinner=False)
def traced(
    key: str, _bundle: ModelBundle, prompt: str, _reply_ids: Sequence[int], _shared: Sequence[Intervention], _user: str
) -> TextTrace:
    """The one pass every view of the page slices (``part_activity.trace``), per scenario and reply, shared like ``written``."""
    return trace(_bundle, prompt, _reply_ids, _shared, scenario=_user)


def knock_out_here(token: str) -> None:
    """Callback: select only this part and open the Knockout page with it."""
    apply({SELECTION: [token]})
    st.session_state[GOTO] = KNOCKOUT.script


def open_typed(shape: dict[str, int]) -> None:
    """Callback: open the part typed in the box if the model has it; otherwise keep the page and say why."""
    typed = st.session_state[TYPED].strip()
    if typed:
        component, st.session_state[TYPED_PROBLEM] = part_view.checked(typed, shape)
        if component is not None:
            st.session_state[PART_KEY] = component.token


results = page_results()
view = current()
emotion = view.emotion
shape = results.shape
part, problem = part_view.chosen(results, emotion)
if problem:
    note_problems([problem])
st.session_state[PART_KEY] = part.token
write_link(run_query("part"))  # the link names the part shown, not one the model lacks
show_problems()
tour.banner(results, emotion, PART)

st.title(f"{part.token}: {part.label}")
st.caption(f"{glossary.HEAD if part.kind == 'head' else glossary.NEURON} {glossary.PART_PAGE}")
pick_col, button_col = st.columns([2, 3], vertical_alignment="bottom")
pick_col.text_input(
    "Open another part",
    key=TYPED,
    placeholder="L20H3 or L10N123",
    on_change=open_typed,
    args=(shape,),
    help="Head 3 of layer 20 is L20H3, neuron 123 of layer 10 is L10N123. Any part named on another page links here too.",
)
if typed_problem := st.session_state.pop(TYPED_PROBLEM, None):
    st.warning(typed_problem, icon=":material/search_off:")
button_col.button(
    f"Switch {part.token} off on the Knockout page",
    icon=":material/power_settings_new:",
    on_click=knock_out_here,
    args=(part.token,),
    key="part_knockout",
    help=f"Opens the Knockout page with only this part selected, for {emotion}.",
)

st.subheader("What switching it off does")
try:
    own = results.causal_effects("steered", part.kind, "mean")
    harm, base_loss = results.causal_harm(part.kind, "mean")
except CacheError as error:
    st.info(str(error))
else:
    paper = results.tensor("head_scores" if part.kind == "head" else "neuron_scores")
    profile = part_profile(own, harm, base_loss, paper, results.emotions, part.kind, part.layer, part.index)
    row = profile.set_index("emotion").loc[emotion]
    total = shape["n_layers"] * (shape["n_heads"] if part.kind == "head" else shape["d_mlp"])
    place = f"{int(row['rank']):,} of {total:,} {part.kind}s" if row["rank"] else "left out (the model needs it for all text)"
    if abs(row["own"]) < 5e-4:
        change = f"barely changes the model's internal {emotion} reading"
    else:
        change = f"{'lowers' if row['own'] > 0 else 'raises'} the model's internal {emotion} reading by {abs(row['own']):.3f}"
    st.markdown(
        f"Switched off (mean ablation) while the model writes a reply steered toward {emotion}, {part.token} {change} "
        f"(estimated; 1 is all that steering adds); the other emotions' readings fall by {row['others']:.3f} on average. In "
        f"the *matters when switched off* ranking for {emotion} it is {place}; by the paper's score (how much it writes "
        f"{emotion}) it is {int(row['paper_rank']):,}."
    )
    st.altair_chart(live_charts.emotion_bars(profile, "own", emotion, "Drop of each emotion's reading when it is off"), width="stretch")
    shown = profile.assign(
        rank=[f"{r:,}" if r else "left out" for r in profile["rank"]], paper_rank=[f"{r:,}" for r in profile["paper_rank"]]
    )
    st.dataframe(
        shown.rename(columns={"own": "drop", "others": "others' drop", "rank": "rank (matters)", "paper_rank": "rank (writes)"}),
        hide_index=True,
        width="stretch",
        column_config={name: st.column_config.NumberColumn(format="%.4f") for name in ("drop", "others' drop", "score")},
    )
    rise = float(harm[part.layer, part.index])
    st.caption(
        f"On plain text, switching it off changes the model's loss by {rise:+.4f} (of {base_loss:.3f}): "
        + ("small, so it is not a part the model needs for all text." if row["rank"] else "too much, so the rankings leave it out.")
        + " Each row is measured on replies steered toward that emotion; *rank (matters)* counts by the causal score, "
        "*rank (writes)* by the paper's score."
    )

st.subheader("At work on one scenario")
user = live.scenario_controls()
bundle = model_bundle(view.model)
if user is None or bundle is None:
    st.stop()
kit = results.steering_kit(bundle)
kind = st.session_state.get(BASELINE, "steered")
base = Baseline(kind, st.session_state.get(KNOCKOUT_METHOD, "direction"), st.session_state.get(KNOCKOUT_STRENGTH))
prompt, shared = base.prompt(bundle, user, emotion), base.edits(kit, emotion)
settings = live.session_decoding()
reply_key = repr((view.model, prompt, emotion, base, settings))
with st.spinner("The model reads the scenario and writes its reply…"), live.model_turn():
    reply = written(reply_key, bundle, prompt, shared, settings)
    trace_key = repr((reply_key, reply.token_ids))
    text = traced(trace_key, bundle, prompt, reply.token_ids, shared, user)
st.markdown(f"**The reply** ({base.describe(kit, emotion)}, as on the Knockout page): {plain(reply.text)}")
shown = text.shown
reply_positions = list(range(*text.reply))
reply_words = part_view.axis_labels([text.tokens[p] for p in reply_positions])
units = unit_directions(results.tensor("expression.resid_post"), tuple(range(shape["n_layers"])))
if not reply_positions:
    st.info("The reply is empty, so there is nothing to show word by word; pick another scenario.")
    st.stop()

if part.kind == "head":
    writes = head_writes(bundle, text, part, units).numpy()  # [T, E]
    cells = part_view.token_cells(reply_words, writes[reply_positions], results.emotions, "emotion", "writes")
    st.markdown("**What it writes, word by word.** Orange: the head pushes toward the emotion (rather than the others) at that word.")
    st.altair_chart(
        live_charts.token_heatmap(
            cells, "emotion", list(results.emotions), reply_words, "writes", f"What {part.token} writes toward each emotion"
        ),
        width="stretch",
    )
    strongest = int(np.argmax(writes[reply_positions, results.emotion_index(emotion)]))
    st.markdown("**Which words it looks at.** Pick a word of the reply: the earlier words it reads are tinted, darker for more attention.")
    if st.session_state.get(f"{WORD}_for") != trace_key or st.session_state.get(WORD, 0) >= len(reply_positions):
        st.session_state[WORD], st.session_state[f"{WORD}_for"] = strongest, trace_key  # a new reply starts on its strongest word
    index = st.select_slider(
        "Word of the reply", options=list(range(len(reply_positions))), format_func=lambda i: f"{i + 1}: {reply_words[i]}", key=WORD
    )
    looker = reply_positions[index]
    weights = head_pattern(text, part)[looker].numpy()
    on_shown = weights[shown]
    st.html(
        part_view.tinted(
            [text.tokens[p] for p in shown], on_shown, float(on_shown.max()) or 1.0, shown.index(looker), shown.index(text.reply[0])
        )
    )
    st.caption(
        f"From the outlined word, {part.token} spends {on_shown.sum():.0%} of its attention on the scenario and the reply shown "
        f"here and {1 - on_shown.sum():.0%} on the chat template's own words (heads often park attention on the first token). "
        "These are the model's own attention weights, read from the same pass."
    )
else:
    activation = neuron_activation(text, part).numpy()
    leaning = neuron_leaning(bundle, part, units).numpy()
    toward = results.emotions[int(np.argmax(leaning))]
    st.markdown(
        f"**When it fires, word by word.** Orange: {part.token} is active (positive), blue: negative. Per unit of activation it "
        f"writes most toward {toward} (against the other emotions; {emotion}: {leaning[results.emotion_index(emotion)]:+.3f})."
    )
    st.html(part_view.tinted([text.tokens[p] for p in shown], activation[shown], reply_at=shown.index(text.reply[0])))
    st.caption("Hover a word for the number. The scenario comes first, then the reply.")
    st.markdown(
        "**The sentences that excite it most**, per emotion, from the second judge's training sentences "
        "(the emotion directions never saw them)"
    )
    try:
        tops = results.neuron_top_sentences(part.layer, part.index)
    except CacheError as error:
        st.info(str(error))
    else:
        for label, group in tops.groupby("emotion", sort=False):
            lines = "  \n".join(f"{r.rank}. {plain(r.text)} :gray[({r.activation:.2f})]" for r in group.itertuples())
            st.markdown(f"**{label}**  \n{lines}")

st.subheader(f"The {emotion} reading, layer by layer")
try:
    layered = results.layer_reading()
except CacheError as error:
    st.info(str(error))
else:
    chart = part_view.layer_chart(
        *part_view.layer_frame(text, layered, results.emotions, emotion), f"{emotion.capitalize()} at each layer and word"
    )
    st.altair_chart(chart, width="stretch")
    st.caption(part_view.layer_caption(layered, results.emotions, emotion, touched_layers(bundle.adapter, shared)))
