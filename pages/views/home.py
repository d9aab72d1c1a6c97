"""Home: what the app shows and why it matters, as a five-step guided tour."""

from __future__ import annotations

import streamlit as st

import emo_core as ec
from emo_core.baselines import Baseline
from ui import glossary, tour
from ui.data import model_bundle, page_results
from ui.pages import HOME
from ui.palette import emotion_label
from ui.replies import sentence, stream_into
from ui.state import current

results = page_results()
view = current()
steps = tour.steps(results, view.emotion)
tour.banner(results, view.emotion, HOME)

st.title("Emotion Circuit Explorer")
st.markdown(
    "Ask a chat model to reply *in anger* or *in sadness*, and something changes inside it before it writes a word. "
    "This app lets you see that change: where, inside the model, each emotion takes shape, and which few of its parts "
    "carry it. Everything here comes from saved results, so it answers instantly."
)
tour.step_button(steps, 0, "Start the tour →", key="tour_start")

for index, step in enumerate(steps):
    with st.container(border=True):
        st.markdown(f"#### {index + 1}. {step.title}")
        st.markdown(step.text)
        if index == 0:
            prompts = results.table("prompts").drop_duplicates(["scenario", "event"])
            labels = [
                f"{sentence(scenario)} {sentence(event)}" for scenario, event in zip(prompts["scenario"], prompts["event"], strict=True)
            ]
            left, right = st.columns([3, 1])
            pick = left.selectbox("Scenario", range(len(prompts)), format_func=labels.__getitem__, key="home_scenario")
            right.markdown(f"Asked to reply in: **{emotion_label(view.emotion)}**  \n(change it in the sidebar)")
            if st.button("Let the model reply", icon=":material/chat:", key="home_reply"):
                bundle = model_bundle(view.model)
                if bundle is not None:
                    from ui.live import shared_replies  # loaded by model_bundle's wait; the page itself opens without it

                    row = prompts.iloc[pick]
                    prompt = Baseline("asked").prompt(bundle, f"{row['scenario']}\n{row['event']}", view.emotion)
                    replies = shared_replies(bundle, [prompt], ec.GenerationSettings(max_new_tokens=48))
                    stream_into(st.empty(), (reply.text for (reply,) in replies))
                    st.caption(
                        "Small models often ignore the instruction in their words, yet their inner notes still change: "
                        "that is what the next steps show."
                    )
        else:
            tour.step_button(steps, index, "Show me →", key=f"tour_show_{index}", primary=False)

with st.expander("Words used in this app"):
    for term, meaning in (
        ("Layer", glossary.LAYER),
        ("Hidden state", glossary.HIDDEN_STATE),
        ("Attention head", glossary.HEAD),
        ("Neuron", glossary.NEURON),
        ("MLP", glossary.MLP),
        ("Emotion direction", glossary.DIRECTION),
        ("Circuit", glossary.CIRCUIT),
        ("UMAP and PCA", glossary.UMAP_PCA),
        ("Knockout", glossary.KNOCKOUT),
        ("Steering", glossary.STEERING),
        ("Judge", glossary.JUDGE),
        ("Internal reading", glossary.READING),
    ):
        st.markdown(f"**{term}.** {meaning}")
