"""``python -m emo_core build | evaluate | generate``: the pipeline from a terminal."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from emo_core.errors import EmoCoreError
from emo_core.evaluation import EvalSettings, evaluate
from emo_core.generation import GenerationSettings, chat_prompt
from emo_core.interventions import Intervention
from emo_core.judge import load_judge
from emo_core.models import load_model
from emo_core.pipeline import build
from emo_core.results import CACHE_ROOT, Results, load_results
from emo_core.scenarios import EMOTIONS, emotion_prompts, neutral_prompts, read_skeletons
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows, score_replies
from emo_core.selection import Component, ablations, circuit_components, parse_token
from emo_core.steering import METHODS, tuned_steering
from emo_core.store import CacheError

GENERATE_METHODS = ("none", "prompt", *METHODS)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id, or a folder")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16", "auto"))
    parser.add_argument("--cache-root", type=Path, default=CACHE_ROOT, help="folder holding one cache per model")


ABLATION_FORMS = "L12H3, L10N123, head:L:H, neuron:L:N, top-heads:K or top-neurons:K"
_COUNT = re.compile(r"[0-9]{1,9}")  # ASCII digits only: "²".isdigit() is true, and int() refuses it


def _at_least_one(text: str) -> int:
    """A count for argparse: a whole number of at least 1 (``--skeletons 0`` or ``-5`` would evaluate on nothing, or on a slice)."""
    if not _COUNT.fullmatch(text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text[:20]}' is not a whole number of at least 1")
    return int(text)


def parse_ablation(specs: Sequence[str], results: Results | None, emotion: str) -> tuple[Intervention, ...]:
    """Zero ablations from tokens (``L12H3``, ``L10N123``, or ``head:L:H``, ``neuron:L:N``) and the circuit's
    ``top-heads:K`` / ``top-neurons:K``."""
    components: list[Component] = []
    for spec in specs:
        kind, _, rest = spec.partition(":")
        if kind in ("top-heads", "top-neurons") and _COUNT.fullmatch(rest) and results is not None:
            members = [c for c in circuit_components(results.circuit(emotion)) if c.kind == kind.removeprefix("top-")[:-1]]
            components.extend(members[: int(rest)])
            continue
        token = spec
        if kind in ("head", "neuron") and len(parts := rest.split(":")) == 2:
            token = f"L{parts[0]}{'H' if kind == 'head' else 'N'}{parts[1]}"
        try:
            components.append(parse_token(token))
        except ValueError:
            raise ValueError(f"Cannot read ablation '{spec[:40]}'; use {ABLATION_FORMS}.") from None
    return tuple(ablations(list(dict.fromkeys(components))))


def run_generate(args: argparse.Namespace) -> None:
    """Write one reply per (skeleton, valence, emotion) of a user's scenario file (settings and file are checked before the model loads)."""
    settings = GenerationSettings(**{**asdict(SCORING_SETTINGS), "max_new_tokens": args.max_new_tokens})
    skeletons = read_skeletons(args.scenarios)
    bundle = load_model(args.model, dtype=args.dtype, device=args.device)
    needs_cache = args.method in METHODS or any(spec.startswith("top-") for spec in args.ablate)
    results = load_results(bundle.name, args.cache_root) if needs_cache else None
    kit = results.steering_kit(bundle) if results is not None else None
    rows, records = [], []
    for emotion in args.emotions:
        ablation = parse_ablation(args.ablate, results, emotion) if args.ablate else ()
        prompts = emotion_prompts(skeletons, [emotion]) if args.method == "prompt" else neutral_prompts(skeletons)
        steered = kit is not None and args.method in METHODS
        tuned = results.steering_settings(args.method, emotion) if steered else {}
        steering = tuple(tuned_steering(kit, tuned, args.method, emotion)) if steered else ()
        for p in prompts:
            rows.append(Row(chat_prompt(bundle, p.user, p.system), emotion, steering + ablation))
            records.append(
                {
                    "skeleton_id": p.skeleton_id,
                    "theme": p.theme,
                    "valence": p.valence,
                    "emotion": emotion,
                    "method": args.method,
                    "strength": tuned.get("strength"),
                    "layers": tuned.get("layers"),
                    "ablate": list(args.ablate),
                    "model": bundle.name,
                    "max_new_tokens": settings.max_new_tokens,
                }
            )
    replies = generate_rows(bundle, rows, settings)
    scores = score_replies(load_judge(args.judge), rows, replies) if args.judge else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as handle:
        for i, (record, reply) in enumerate(zip(records, replies, strict=True)):
            record["reply"] = reply.text
            if scores is not None:
                record.update(judged=scores["predicted"][i], p_target=scores["p_target"][i], degenerate=bool(scores["degenerate"][i]))
            handle.write(json.dumps(record) + "\n")
    print(f"Wrote {len(records)} replies to {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m emo_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build_cmd = commands.add_parser("build", help="compute every result for a model and write its cache (resumable)")
    _model_options(build_cmd)
    build_cmd.add_argument("--judge", default="minilm", help="judge used to tune steering: 'minilm' or a local HF classifier")

    eval_cmd = commands.add_parser("evaluate", help="measure steering, ablation and clusters on the evaluation split; writes report.json")
    _model_options(eval_cmd)
    eval_cmd.add_argument("--judge", default="minilm")
    eval_cmd.add_argument("--skeletons", type=_at_least_one, default=EvalSettings.skeletons, help="how many evaluation skeletons to use")

    gen_cmd = commands.add_parser("generate", help="one reply per (skeleton, valence, emotion) of your own scenario file")
    _model_options(gen_cmd)
    gen_cmd.add_argument(
        "--scenarios", type=Path, required=True, help="JSONL with skeleton_id, theme, scenario, event.{positive,neutral,negative}"
    )
    gen_cmd.add_argument("--method", choices=GENERATE_METHODS, default="none")
    gen_cmd.add_argument("--emotions", nargs="+", choices=EMOTIONS, default=list(EMOTIONS))
    gen_cmd.add_argument("--ablate", nargs="*", default=[], help=ABLATION_FORMS)
    gen_cmd.add_argument("--max-new-tokens", type=int, default=SCORING_SETTINGS.max_new_tokens)
    gen_cmd.add_argument("--judge", default=None, help="also judge each reply ('minilm' or a local HF classifier)")
    gen_cmd.add_argument("--out", type=Path, required=True)

    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            folder = build(args.model, root=args.cache_root, device=args.device, dtype=args.dtype, judge=args.judge)
            print(f"Cache written to {folder}")
        elif args.command == "evaluate":
            settings = EvalSettings(skeletons=args.skeletons)
            report = evaluate(args.model, root=args.cache_root, device=args.device, dtype=args.dtype, judge=args.judge, settings=settings)
            print(json.dumps({method: round(summary["overall"], 3) for method, summary in report["steering"].items()}))
        else:
            run_generate(args)
    except KeyboardInterrupt:
        print("Interrupted; run the same command again to resume where it stopped.", file=sys.stderr)
        return 130
    except (EmoCoreError, CacheError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
