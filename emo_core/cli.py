"""``python -m emo_core build | evaluate | generate``: the pipeline from a terminal."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from emo_core.baselines import LIVE_KINDS, METHODS, Baseline
from emo_core.errors import EmoCoreError
from emo_core.evaluation import EvalSettings, evaluate
from emo_core.interventions import AblationMode
from emo_core.judge import load_judge
from emo_core.knockout import comparison_rows
from emo_core.models import load_model
from emo_core.parts import SPEC_FORMS, Component, parse_spec, resolve
from emo_core.pipeline import build
from emo_core.results import CACHE_ROOT, Results, load_results
from emo_core.scenarios import EMOTIONS, NEUTRAL_SYSTEM, VALENCES, PromptSpec, load_skeletons, neutral_prompts, read_skeletons
from emo_core.scoring import SCORING_SETTINGS, generate_rows, score_replies
from emo_core.store import CacheError

MODES: tuple[AblationMode, ...] = ("zero", "mean")


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id, or a folder")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16", "auto"))
    parser.add_argument("--cache-root", type=Path, default=CACHE_ROOT, help="folder holding one cache per model")


_COUNT = re.compile(r"[0-9]{1,9}")  # ASCII digits only: "²".isdigit() is true, and int() refuses it


def _at_least_one(text: str) -> int:
    """A count for argparse: a whole number of at least 1 (``--skeletons 0`` or ``-5`` would evaluate on nothing, or on a slice)."""
    if not _COUNT.fullmatch(text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text[:20]}' is not a whole number of at least 1")
    return int(text)


def _strength(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:20]}' is not a number") from None


def knockout_parts(
    specs: Sequence[str], results: Results | None, emotion: str, excluded: frozenset[Component] = frozenset()
) -> list[Component]:
    """The parts ``specs`` name for ``emotion`` (``parts.SPEC_FORMS``); a ranking needs the model's ``results`` and skips
    ``excluded`` (the parts a circuit-steered baseline pushes, ``Baseline.pushes``)."""
    parsed = [parse_spec(spec) for spec in specs]

    def ranked(spec: object) -> list[Component]:
        if results is None:
            raise ValueError(f"Naming parts by a ranking ({', '.join(specs)[:60]}) needs the model's built results.")
        return results.named_parts(emotion, spec, excluded)

    return resolve(parsed, ranked)


def _user_turns(args: argparse.Namespace) -> list[PromptSpec]:
    """The emotion-free prompts to reply to: every outcome of a scenario file, one of our scenarios, or a typed text."""
    if args.scenarios is not None:
        return neutral_prompts(read_skeletons(args.scenarios))
    if args.scenario is not None:
        found = {s.skeleton_id: s for s in [*load_skeletons("train"), *load_skeletons("eval")]}
        chosen = []
        for key in args.scenario:
            skeleton_id, _, valence = key.partition(":")
            if skeleton_id not in found or valence not in VALENCES:
                example = "work_eval_00:negative"
                raise EmoCoreError(f"'{key[:60]}' is not one of our scenarios; write <skeleton_id>:<valence>, e.g. {example}.")
            chosen += [p for p in neutral_prompts([found[skeleton_id]]) if p.valence == valence]
        return chosen
    return [PromptSpec("typed", "typed", "typed", None, NEUTRAL_SYSTEM, args.text)]


def run_generate(args: argparse.Namespace) -> None:
    """Write the replies of a baseline (and, with ``--knockout``, the knocked-out and random-control replies) for every
    prompt and emotion, built by ``knockout.comparison_rows`` as the Knockout page builds them; the settings and the
    scenarios are checked before the model loads."""
    settings = replace(
        SCORING_SETTINGS, max_new_tokens=args.max_new_tokens, do_sample=args.sample, seed=args.seed, classroom_safe=args.classroom_safe
    )
    baseline = Baseline(args.baseline, args.method, args.strength)
    prompts = _user_turns(args)
    specs = [parse_spec(spec) for spec in args.knockout]  # refuse bad specs before loading anything
    bundle = load_model(args.model, dtype=args.dtype, device=args.device)
    needs_cache = baseline.kind == "steered" or args.mode == "mean" or any(not isinstance(spec, Component) for spec in specs)
    results = load_results(bundle.name, args.cache_root) if needs_cache else None
    kit = results.steering_kit(bundle) if results is not None else None
    means = results.neutral_means if args.mode == "mean" and results is not None else None
    rows, records = [], []
    for emotion in args.emotions:
        parts = knockout_parts(args.knockout, results, emotion, baseline.pushes(kit, emotion) if kit is not None else frozenset())
        strength = None
        if baseline.kind == "steered":
            strength = kit.settings(baseline.method, emotion)["strength"] if baseline.strength is None else baseline.strength
        made = comparison_rows(bundle, kit, baseline, [p.user for p in prompts], emotion, parts, args.mode, means, args.random, args.seed)
        for row in made:
            tags = dict(row.tags)
            p = prompts[int(tags["scenario"])]
            rows.append(row)
            records.append(
                {
                    "skeleton_id": p.skeleton_id,
                    "theme": p.theme,
                    "valence": p.valence,
                    "emotion": emotion,
                    "baseline": baseline.kind,
                    "method": baseline.method if baseline.kind == "steered" else None,
                    "strength": strength,
                    "variant": tags["variant"],
                    "parts": tags["parts"].split(),
                    "mode": args.mode,
                    "model": bundle.name,
                    "max_new_tokens": settings.max_new_tokens,
                    "decode": "sample" if settings.do_sample else "greedy",
                    "seed": settings.seed,
                    "classroom_safe": settings.classroom_safe,
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

    gen_cmd = commands.add_parser(
        "generate", help="replies to scenarios: a baseline, optionally with parts switched off and a matched random control"
    )
    _model_options(gen_cmd)
    where = gen_cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--scenarios", type=Path, help="JSONL with skeleton_id, theme, scenario, event.{positive,neutral,negative}")
    where.add_argument("--scenario", nargs="+", help="our scenarios with their outcomes, <skeleton_id>:<valence> each, in order")
    where.add_argument("--text", help="a scenario of your own, as the user turn")
    gen_cmd.add_argument("--baseline", choices=LIVE_KINDS, default="plain", help="how the reply is made emotional")
    gen_cmd.add_argument("--method", choices=METHODS, default="direction", help="how a steered baseline steers")
    gen_cmd.add_argument("--strength", type=_strength, default=None, help="a steered baseline's strength (default: the tuned one)")
    gen_cmd.add_argument("--emotions", nargs="+", choices=EMOTIONS, default=list(EMOTIONS))
    gen_cmd.add_argument("--knockout", nargs="*", default=[], help=f"parts to switch off: {SPEC_FORMS}")
    gen_cmd.add_argument("--mode", choices=MODES, default="zero", help="zero or mean ablation")
    gen_cmd.add_argument(
        "--random",
        action="store_true",
        help="also write a reply with a matched random set of parts off (a fresh set per scenario)",
    )
    gen_cmd.add_argument("--max-new-tokens", type=int, default=SCORING_SETTINGS.max_new_tokens)
    gen_cmd.add_argument("--sample", action="store_true", help="sample instead of greedy decoding (repeatable with --seed)")
    gen_cmd.add_argument("--seed", type=int, default=0, help="the sampling seed, and the seed of the random sets' draws")
    gen_cmd.add_argument("--classroom-safe", action="store_true", help="never write a listed slur or profanity (the app's default)")
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
