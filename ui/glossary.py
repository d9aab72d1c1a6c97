"""Plain-words explanations shown beside widgets and charts, for people who have never heard of a residual stream."""

LAYER = (
    "The model reads text in about thirty steps called layers; each layer rewrites the model's "
    "inner notes on the text. Layer 0 is the first step, the last layer is just before it picks a word."
)
HEAD = "An attention head is a small part of a layer that looks back at earlier words and copies what it finds useful."
NEURON = "A neuron is one number inside a layer's MLP (its 'thinking' block) that switches on for certain patterns."
HIDDEN_STATE = "The hidden state is the list of numbers the model keeps about the text so far: its inner notes."
EMOTION = "The emotion the prompt asked the model to reply in (for example 'Always reply in anger')."
DIRECTION = (
    "An emotion direction is the average way the hidden state shifts when the model is asked for that emotion "
    "instead of the others, with the scenario itself averaged out."
)
MODEL = "Which language model to look inside. The default is SmolLM2-135M-Instruct, a small chat model that runs on a laptop."
ATTENTION_MLP = (
    "Each layer has two parts: attention (heads that gather information from earlier words) and the MLP "
    "(neurons that transform it). Each adds its result to the model's running notes."
)
MLP = (
    "The MLP is the second part of every layer, after attention: a block of neurons that works on each word on its own, "
    "turning what attention gathered into new notes."
)
UMAP_PCA = (
    "UMAP and PCA are two ways to squeeze hundreds of numbers into a flat map. UMAP keeps neighbours together (good for "
    "seeing clusters); PCA shows the two directions along which the prompts differ most (distances are more faithful)."
)
CIRCUIT = (
    "An emotion's circuit is a small set of attention heads and neurons: inside the parts of the model that matter most for "
    "that emotion, the ones that write it most strongly while the model speaks with it. Circuit steering turns up other parts: "
    "those that matter most for the emotion when switched off, which steer this small model's replies far better."
)
READING = (
    "The internal reading is how strongly the model's own hidden state, near its last layers, points toward each emotion "
    "while it writes: 0 is the plain model, 1 a reply steered toward that emotion. The judge reads the words; this reads the model."
)
KNOCKOUT = (
    "A knockout switches parts off while the model writes: a head's or a neuron's output is set to zero (or to its average), "
    "so whatever it would have added is missing. If the emotion fades, those parts carried it."
)
STEERING = (
    "Steering turns an emotion up without asking for it: the emotion's direction (the shift the model shows while saying that "
    "emotion) is added to its hidden state as it writes."
)
JUDGE = "The judge is a small separate model that reads a reply and gives the probability of each emotion (or none) in its words."

ADJECTIVES = {
    "anger": "angry",
    "sadness": "sad",
    "happiness": "happy",
    "fear": "afraid",
    "surprise": "surprised",
    "disgust": "disgusted",
}


def adjective(emotion: str) -> str:
    """The word a sentence needs after "make the reply …" or "feel …": ``sad`` for ``sadness`` (the emotion itself when unknown)."""
    return ADJECTIVES.get(emotion, emotion)


PART_PAGE = (
    "This page shows one part at work: what switching it off does to each emotion, what it reads and writes word by word on "
    "a scenario and its reply, and how strongly the model holds the emotion at each layer."
)
