"""Expression vectors read each reply's tokens after the question; sharing the question's cache changes nothing."""

from __future__ import annotations

import torch

import emo_core as ec
from emo_core.expression import QUESTION, reply_means


def test_reply_means_equal_one_whole_pass_per_reply(tiny: ec.ModelBundle) -> None:
    replies = ["I am so glad it worked out!", "Ugh.", "That is the worst thing anyone has ever said to me, honestly."]
    got = reply_means(tiny, replies, ("resid_post", "mlp_post"), batch_size=2)
    prompt = ec.chat_prompt(tiny, QUESTION)
    n = len(tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    for i, reply in enumerate(replies):
        batch = ec.generation.encode(tiny, [prompt + reply])
        with torch.inference_mode(), ec.capture(tiny, ["resid_post", "mlp_post"]) as seen:
            tiny.model(**batch)
        for site in ("resid_post", "mlp_post"):
            want = torch.stack([seen[(site, layer)][0, n:].float().mean(dim=0) for layer in range(tiny.shape.n_layers)])
            torch.testing.assert_close(got[site][i], want, atol=1e-5, rtol=1e-5)  # means taken in float32
