"""Write docs/findings.md from an evaluation report, so the findings in the docs cannot drift from report.json.

Usage::

    .venv/bin/python -m scripts.findings            # rewrite docs/findings.md from the shipped report
    .venv/bin/python -m scripts.findings --check    # exit 1 when docs/findings.md differs from what it would write

Every number in the output comes from the report; the only constants here are the bars the project set
(issue 26's steering target, the 5% harm bar, the 0.9 probe accuracy). A section the report lacks is left out,
and so is a steering method the report lacks. Pure standard library: no torch, no pandas.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORT = ROOT / "cached_activations" / "SmolLM2-135M-Instruct" / "report.json"
DEFAULT_OUT = ROOT / "docs" / "findings.md"
COMMAND = "python -m scripts.findings"

# The steering section's methods, in the order shown, with what each one is.
METHODS = (
    ("plain", "plain (no steering: chance)"),
    ("asked", "asked (the emotion requested in the system prompt)"),
    ("direction", "direction steering"),
    ("circuit", "circuit steering"),
)
# Issue 26's steering target (both judges, the stricter fluency check): overall, every emotion, and the most degenerate
# replies allowed.
TARGET_OVERALL = 0.8
TARGET_EACH = 0.6
TARGET_DEGENERATE = 0.05
HARM_BAR = 0.05  # a knockout may raise the neutral-prompt loss by at most this share
SMALL_GAP = 5.0  # points of on-target share below which asking for the emotion "barely" changes the reply
PROBE_BAR = 0.9  # "the emotions separate": the linear probe's held-out accuracy from this on
KINDS = ("head", "neuron")  # how the report names the kinds of part
KIND_WORDS = {"head": "heads", "neuron": "neurons"}  # how the text names them
RANKING_NAMES = {"causal": "causal ranking", "paper": "paper's ranking"}


def pct(value: float) -> str:
    """A share as a percentage with one decimal."""
    return f"{100 * value:.1f}%"


def num(value: float, digits: int = 2) -> str:
    """A number with ``digits`` decimals, never "-0.00"."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def bar(value: float) -> str:
    """A bar's share as a percentage, without needless decimals."""
    return f"{100 * value:g}%"


def span(values: Sequence[float], fmt=pct) -> str:
    """``low to high`` of some values (one value when they are all equal once formatted)."""
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low} to {high}"


def interval(bounds: Sequence[float]) -> str:
    """A 95% interval; a bound just below zero keeps its sign ("-0.00"), since whether it reaches zero matters."""
    return f"{bounds[0]:.2f} to {bounds[1]:.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


# Sections: each takes the report and returns its lines, or nothing when the report lacks what it needs.


def judge_section(report: Mapping) -> list[str]:
    judge = report.get("judge")
    if not judge or "heldout_accuracy" not in judge:
        return []
    kind = judge.get("kind", "the")
    sentences = ""
    if judge.get("confusion"):
        sentences = f" on {sum(sum(row) for row in judge['confusion'])} held-out sentences"
    labels = f" over {len(judge['labels'])} labels ({', '.join(judge['labels'])})" if judge.get("labels") else ""
    lines = [
        "## The judges",
        "",
        f"The `{kind}` judge labels replies{labels}. Its accuracy{sentences}: {pct(judge['heldout_accuracy'])}.",
        "",
    ]
    second = report.get("second_judge")
    if second:
        count = f" on its {sum(sum(row) for row in second['confusion'])} held-out sentences" if second.get("confusion") else ""
        lines += [
            f"The second judge (`{second['kind']}`: word and character n-grams, trained on a corpus written separately from the "
            f"first judge's) has an accuracy{count} of {pct(second['heldout_accuracy'])}. On each other's held-out sentences: "
            f"first judge {pct(second['first_on_second_heldout'])}, second judge {pct(second['second_on_first_heldout'])}.",
            "",
        ]
    check = report.get("fluency_check")
    if check:
        kinds = ", ".join(f"{kind} {pct(share)}" for kind, share in check["recall_by_kind"].items())
        lines += [
            f"The fluency check, on {check['fluent']} fluent and {check['broken']} broken replies labelled by reading "
            f"(`fluency_test.jsonl`, which chose no threshold): precision {pct(check['precision'])}, recall "
            f"{pct(check['recall'])}. Recall by kind of breakage: {kinds}.",
            "",
        ]
    return lines


def steering_section(report: Mapping) -> list[str]:
    steering = report.get("steering") or {}
    methods = [(key, label) for key, label in METHODS if key in steering]
    if not methods:
        return []
    settings = report.get("settings", {})
    lines = ["## Steering", ""]
    where = f"{settings['skeletons']} evaluation skeletons" if "skeletons" in settings else "the evaluation skeletons"
    counts = sorted({steering[key]["n"] for key, _ in methods if "n" in steering[key]})
    per_method = f", {' or '.join(str(n) for n in counts)} replies per method" if counts else ""
    both = all("by_judge" in steering[key] for key, _ in methods)
    how = (
        "A reply is on target when both judges read the emotion and the fluency check passes it (it answers its scenario; no "
        "punctuation runs, stretched words, repeated phrases, symbols or non-words)."
        if both
        else "scored by the judge above. A degenerate reply (repeats, symbols, non-words) counts as a miss."
    )
    lines += [f"Replies to {where}{per_method}. {how}", ""]

    def judged(result: Mapping) -> list[str]:
        if not both:
            return []
        return [pct(result["by_judge"]["first"]["overall"]), pct(result["by_judge"]["second"]["overall"]), pct(result["agreement"])]

    lines += table(
        [
            "method",
            "on target (both judges)" if both else "on target",
            *(["first judge", "second judge", "judges agree"] if both else []),
            "degenerate",
            "replies",
        ],
        [
            [
                label,
                pct(steering[key]["overall"]),
                *judged(steering[key]),
                pct(steering[key].get("degenerate_rate", 0.0)),
                str(steering[key].get("n", "")),
            ]
            for key, label in methods
        ],
    )
    reasons = [(label, steering[key]["reasons"]) for key, label in methods if steering[key].get("reasons")]
    if reasons:
        lines += ["", "Why replies failed the fluency check:", ""]
        lines += [f"* {label}: " + ", ".join(f"{reason} {n}" for reason, n in found.items()) for label, found in reasons]
    with_emotions = [(key, label) for key, label in methods if steering[key].get("per_emotion")]
    if with_emotions:
        emotions = list(steering[with_emotions[0][0]]["per_emotion"])
        lines += ["", "On target, per emotion:", ""]
        lines += table(
            ["emotion", *(key for key, _ in with_emotions)],
            [[emotion, *(pct(steering[key]["per_emotion"][emotion]) for key, _ in with_emotions)] for emotion in emotions],
        )
    with_valence = [(key, label) for key, label in methods if steering[key].get("per_valence")]
    if with_valence:
        valences = list(steering[with_valence[0][0]]["per_valence"])
        lines += ["", "On target, per valence of the scenario's outcome:", ""]
        lines += table(
            ["valence", *(key for key, _ in with_valence)],
            [[valence, *(pct(steering[key]["per_valence"][valence]) for key, _ in with_valence)] for valence in valences],
        )
    verdicts = [_target_verdict(key, steering[key]) for key, _ in methods if key != "plain"]
    lines += [
        "",
        f"The project's steering target (issue 26) is at least {bar(TARGET_OVERALL)} on target overall, every emotion at least "
        f"{bar(TARGET_EACH)}, and at most {bar(TARGET_DEGENERATE)} degenerate replies.",
        "",
    ]
    lines += [f"* {verdict}" for verdict in verdicts]
    if "plain" in steering and "asked" in steering:
        gap = 100 * (steering["asked"]["overall"] - steering["plain"]["overall"])
        sentence = f"Asking for the emotion moves the on-target share by {gap:+.1f} points over the plain reply"
        lines += ["", sentence + (": this model barely acts on the request." if abs(gap) < SMALL_GAP else ".")]
    for key, label in methods:
        examples = steering[key].get("examples") or {}
        if key in ("direction", "circuit") and examples and both:
            lines += ["", f"Two replies per emotion drawn at random, {label}:", ""]
            lines += table(
                ["emotion", "reply", "counted"],
                [
                    [emotion, " ".join(str(example["reply"]).split()).replace("|", "/")[:160], _counted(example)]
                    for emotion, found in examples.items()
                    for example in found
                ],
            )
    lines.append("")
    return lines


def _counted(example: Mapping) -> str:
    if example.get("hit"):
        return "yes"
    if example.get("reason"):
        return f"no: {example['reason']}"
    return f"no: read as {example.get('predicted')} / {example.get('predicted_2')}"


def _target_verdict(key: str, result: Mapping) -> str:
    misses = []
    if result["overall"] < TARGET_OVERALL:
        misses.append(f"{pct(result['overall'])} overall")
    low = [f"{emotion} {pct(share)}" for emotion, share in result.get("per_emotion", {}).items() if share < TARGET_EACH]
    if low:
        misses.append("below the bar: " + ", ".join(low))
    if result.get("degenerate_rate", 0.0) > TARGET_DEGENERATE:
        misses.append(f"{pct(result['degenerate_rate'])} degenerate")
    if not misses:
        return f"`{key}`: met."
    return f"`{key}`: not met ({'; '.join(misses)})."


def clusters_section(report: Mapping) -> list[str]:
    clusters = report.get("clusters") or {}
    separation = clusters.get("separation") or {}
    nearest = clusters.get("nearest") or {}
    if not separation and not nearest:
        return []
    lines = ["## Clusters", ""]
    if separation:
        layers = sorted(separation, key=int)
        accuracy = {layer: separation[layer]["probe_accuracy"] for layer in layers}
        start = None
        for layer in reversed(layers):
            if accuracy[layer] < PROBE_BAR:
                break
            start = layer
        if start is None:
            lines.append(
                f"A linear probe on the hidden state (held-out skeletons) never stays at or above {bar(PROBE_BAR)} to the last layer."
            )
        else:
            after = [accuracy[layer] for layer in layers if int(layer) >= int(start)]
            before = [accuracy[layer] for layer in layers if int(layer) < int(start)]
            sentence = (
                f"The emotions separate from layer {start} on: a linear probe on the hidden state (held-out skeletons) "
                f"reads the emotion with {span(after)} accuracy from there to the last layer"
            )
            lines.append(sentence + (f", {span(before)} before." if before else "."))
        best = max(layers, key=lambda layer: separation[layer]["silhouette"])
        lines += ["", f"The silhouette of the emotion groups peaks at layer {best} ({num(separation[best]['silhouette'])})."]
    if nearest:
        last = max(nearest, key=int)
        pairs = ", ".join(f"{emotion}: {other}" for emotion, other in nearest[last].items())
        anger = f" Anger's nearest emotion there is {nearest[last]['anger']}." if "anger" in nearest[last] else ""
        lines += ["", f"Nearest emotion (cosine of the emotion directions) at the last layer, {last}: {pairs}.{anger}"]
    lines.append("")
    return lines


def _curves(report: Mapping) -> Mapping:
    return (report.get("ablation") or {}).get("curves") or {}


def _k_sorted(points: Mapping) -> list[str]:
    return sorted(points, key=int)


def _mean_drop(points: Mapping, k: str, field: str) -> float | None:
    entries = points.get(k) or {}
    return mean([entry[field] for entry in entries.values()]) if entries else None


def curves_section(report: Mapping) -> list[str]:
    curves = _curves(report)
    reading = curves.get("reading") or {}
    if not reading:
        return []
    mode = curves.get("mode", "")
    lines = [
        "## Knockout curves",
        "",
        f"Each ranking's top k parts switched off ({mode} ablation) against k random parts from the same layers, on held-out "
        "replies. The number is the fall of the internal reading of the reply's emotion (1 = all that steering adds; "
        "a negative fall is a rise), the mean over the emotions. The random rows are the matched random sets of that ranking's top k.",
        "",
    ]
    summary = []
    for baseline, result in reading.items():
        rankings = [ranking for ranking in ("causal", "paper") if ranking in result]
        if not rankings:
            continue
        ks = sorted({k for ranking in rankings for kind in KINDS for k in result[ranking].get(kind, {})}, key=int)
        if not ks:
            continue
        prompts = f", {result['n_prompts']} prompts per emotion" if "n_prompts" in result else ""
        base = result.get("baseline_reading") or {}
        before = f"; reading before the knockout, mean over emotions: {num(mean(list(base.values())))}" if base else ""
        lines += [f"Baseline *{baseline}*{prompts}{before}.", ""]
        rows = []
        for kind in KINDS:
            for ranking in rankings:
                points = result[ranking].get(kind, {})
                if not points:
                    continue
                name = RANKING_NAMES.get(ranking, ranking)
                for field, label in (
                    ("top_drop", f"{KIND_WORDS[kind]}, top k of the {name}"),
                    ("random_drop", f"{KIND_WORDS[kind]}, k random (matched to the {name})"),
                ):
                    values = [_mean_drop(points, k, field) for k in ks]
                    rows.append([label, *("" if value is None else num(value) for value in values)])
        lines += table(["parts switched off", *(f"k = {k}" for k in ks)], rows)
        lines.append("")
        largest = ks[-1]
        cells = [baseline, largest]
        for ranking, field in (("causal", "top_drop"), ("paper", "top_drop"), ("causal", "random_drop")):
            for kind in KINDS:
                value = _mean_drop(result.get(ranking, {}).get(kind, {}), largest, field)
                cells.append("" if value is None else num(value))
        summary.append(cells)
    if summary:
        lines += ["At the largest k of each baseline:", ""]
        lines += table(
            ["baseline", "k", "causal heads", "causal neurons", "paper heads", "paper neurons", "random heads", "random neurons"],
            summary,
        )
        lines.append("")
    return lines


def _target_sets(curves: Mapping) -> dict[str, list[tuple[str, str, str, Mapping]]]:
    """Per baseline, the target sets (those with a ``specific`` verdict): (emotion, kind, k, entry)."""
    out: dict[str, list] = {}
    for baseline, result in (curves.get("reading") or {}).items():
        for kind in KINDS:
            for k, entries in (result.get("causal", {}).get(kind) or {}).items():
                for emotion, entry in entries.items():
                    if "specific" in entry:
                        out.setdefault(baseline, []).append((emotion, kind, k, entry))
    return out


def _rise(harm: Mapping, name: str) -> float | None:
    entry = harm.get(name)
    return entry["relative_rise"] if isinstance(entry, Mapping) and "relative_rise" in entry else None


def targets_section(report: Mapping) -> list[str]:
    curves = _curves(report)
    sets = _target_sets(curves)
    if not sets:
        return []
    harm = curves.get("harm") or {}
    sizes = sorted({f"top {k} {KIND_WORDS[kind]}" for entries in sets.values() for _, kind, k, _ in entries})
    lines = [
        "## Target sets",
        "",
        f"The target sets ({', '.join(sizes)} of the causal ranking, per emotion) pass when they lower their emotion's reading at "
        "least 3 times as much as random parts with the interval above zero (`three_times_random`), at least 1.5 times as much "
        f"as the other emotions' readings (`specific`), and raise the neutral-prompt loss by at most {bar(HARM_BAR)}.",
        "",
    ]
    rows = []
    notes = []
    for baseline, entries in sets.items():
        passed: dict[str, list[bool]] = {}
        counts = [0, 0, 0, 0]
        misses = []
        for emotion, kind, k, entry in entries:
            rise = _rise(harm, f"{baseline}/{emotion}/{kind}/{k}")
            checks = [entry.get("three_times_random", False), entry.get("specific", False), rise is None or rise <= HARM_BAR]
            ok = all(checks)
            for i, check in enumerate([*checks, ok]):
                counts[i] += bool(check)
            passed.setdefault(emotion, []).append(ok)
            if not ok:
                why = [text for check, text in zip(checks, ("not 3x random", "not specific"), strict=False) if not check]
                if not checks[2]:
                    why.append(f"loss +{pct(rise)}")
                misses.append(f"{emotion} {KIND_WORDS[kind]} ({', '.join(why)})")
        total = len(entries)
        rows.append([baseline, *(f"{count}/{total}" for count in counts), f"{sum(all(v) for v in passed.values())}/{len(passed)}"])
        if misses:
            notes.append(f"* *{baseline}* misses: {'; '.join(misses)}.")
    lines += table(
        ["baseline", "3x random", "specific", f"loss rise <= {bar(HARM_BAR)}", "all three", "emotions with every set passing"], rows
    )
    if notes:
        lines += ["", *notes]
    prompts = sorted({r["n_prompts"] for r in (curves.get("reading") or {}).values() if "n_prompts" in r})
    draws = sorted({entry["n_random"] for entries in sets.values() for *_, entry in entries if "n_random" in entry})
    if prompts and draws:
        lines += [
            "",
            f"The target sets are read on {' or '.join(map(str, prompts))} prompts per emotion, so their intervals are narrow by "
            f"construction; their {' or '.join(map(str, draws))} random draws each are the firmer side.",
        ]
    lines.append("")
    return lines


def harm_section(report: Mapping) -> list[str]:
    harm = _curves(report).get("harm") or {}
    rises = {name: entry["relative_rise"] for name, entry in harm.items() if isinstance(entry, Mapping) and "relative_rise" in entry}
    if not rises:
        return []
    within = sum(rise <= HARM_BAR for rise in rises.values())
    lines = ["## Harm", ""]
    base = f" (plain model: {num(harm['base_loss'], 3)})" if "base_loss" in harm else ""
    lines.append(
        f"The next-token loss on neutral prompts{base}, with each knocked-out set switched off: {within} of {len(rises)} sets "
        f"raise it by at most {bar(HARM_BAR)}; the rises range over {span(list(rises.values()))}."
    )
    above = [f"`{name}` +{pct(rise)}" for name, rise in rises.items() if rise > HARM_BAR]
    if above:
        lines += ["", f"Above the bar: {', '.join(above)}."]
    lines.append("")
    return lines


def judged_section(report: Mapping) -> list[str]:
    judged = _curves(report).get("judged") or {}
    groups = [(kind, k, entries) for kind in KINDS for k, entries in (judged.get(kind) or {}).items()]
    if not groups:
        return []
    baseline = judged.get("baseline", "")
    lines = [
        "## Judged knockouts",
        "",
        f"The judge reads replies on the *{baseline}* baseline with the top parts of the causal ranking switched off, and with as "
        "many random parts from the same layers (each reply its own random draw). The number is the fall of the judge's "
        "probability of the emotion, with its 95% interval.",
        "",
    ]
    base = judged.get("baseline_p_target") or {}
    for kind, k, entries in groups:
        replies = sorted({entry["n_top"] for entry in entries.values()})
        lines += [f"Top {k} {KIND_WORDS[kind]}, {' or '.join(map(str, replies))} replies per emotion and condition:", ""]
        rows = []
        for emotion, entry in entries.items():
            rows.append(
                [
                    emotion,
                    num(base[emotion]) if emotion in base else "",
                    num(entry["top_drop"]),
                    interval(entry["top_ci95"]),
                    num(entry["random_drop"]),
                    interval(entry["random_ci95"]),
                    "yes" if entry.get("three_times_random") else "no",
                    pct(entry["degenerate_top"]) if "degenerate_top" in entry else "",
                ]
            )
        lines += table(
            ["emotion", "p(emotion) before", "top drop", "interval", "random drop", "interval", "3x random", "degenerate"],
            rows,
        )
        passing = sum(bool(entry.get("three_times_random")) for entry in entries.values())
        lines += ["", f"{passing} of {len(entries)} emotions pass the 3x bar with intervals above zero."]
        failing = [f"{emotion} ({_judged_miss(entry)})" for emotion, entry in entries.items() if not entry.get("three_times_random")]
        if failing:
            lines[-1] += f" Not passing: {', '.join(failing)}."
        degenerate = [entry["degenerate_top"] for entry in entries.values() if "degenerate_top" in entry]
        if degenerate:
            lines[-1] += f" Knocked-out replies: {span(degenerate)} degenerate."
        lines.append("")
    return lines


def _judged_miss(entry: Mapping) -> str:
    """Why a judged knockout misses the 3x bar."""
    why = []
    if entry["top_drop"] < 3 * max(entry["random_drop"], 0.0):
        why.append("less than 3x the random drop")
    if entry["top_ci95"][0] <= 0:
        why.append("its interval reaches zero")
    if entry.get("difference_ci95") and entry["difference_ci95"][0] <= 0:
        why.append("the interval of its difference from random reaches zero")
    return ", ".join(why) or "see the report"


def prepared_section(report: Mapping) -> list[str]:
    prepared = report.get("prepared") or {}
    if not prepared:
        return []
    lines = [
        "## Prepared knockouts",
        "",
        "Each emotion's knockout and baseline as `build` chose them on training scenarios (the Knockout page's default), on every "
        "evaluation prompt, with a matched random set drawn per prompt, replies written as the page writes them (classroom-safe). "
        "*Carried*: baseline replies the judge reads as the emotion; *removed*: of those, the share whose top class is no longer "
        "the emotion. Target (issue 21): removed at least 70%, random at most 20%, knocked-out degenerate at most 5%.",
        "",
    ]
    rows = []
    for emotion, entry in prepared.items():
        base = entry["baseline"]
        rows.append(
            [
                emotion,
                f"{base['method']} x{base['factor']:g} ({num(base['strength'])})",
                f"{entry['parts']}, {entry['mode']}",
                f"{entry['carried']} of {entry['scenarios']}",
                f"{entry['removed']} ({pct(entry['removed_share'])})",
                f"{entry['random_removed']} ({pct(entry['random_share'])})",
                f"{entry['p_value']:.2g}",
                pct(entry["degenerate_share"]),
                "yes" if entry["meets_target"] else "no",
            ]
        )
    lines += table(["emotion", "baseline", "knockout", "carried", "removed", "random removed", "p", "degenerate", "target"], rows)
    met = [emotion for emotion, entry in prepared.items() if entry["meets_target"]]
    lines += ["", f"{len(met)} of {len(prepared)} emotions meet the target{': ' + ', '.join(met) if met else ''}.", ""]
    return lines


def render(report: Mapping, source: str) -> str:
    """The whole of docs/findings.md for ``report``, read from ``source`` (named in the first line)."""
    model = report.get("model", "the model")
    settings = report.get("settings") or {}
    intro = "What `python -m emo_core evaluate` measured, on the evaluation skeletons only."
    if "bootstrap" in settings:
        intro += f" Intervals are 95% bootstrap intervals over {settings['bootstrap']} resamples."
    lines = [
        f"<!-- Generated by `{COMMAND}` from {source}. Do not edit by hand: edit scripts/findings.py or rerun evaluate. -->",
        "",
        f"# Findings on {model}",
        "",
        intro + " `tests/test_docs.py` fails when this page no longer matches the report.",
        "",
    ]
    sections = (judge_section, steering_section, prepared_section, clusters_section, curves_section, targets_section, harm_section)
    for section in (*sections, judged_section):
        lines += section(report)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (so the output does not depend on the checkout's place)."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def build(report_path: Path = DEFAULT_REPORT) -> str:
    """The text docs/findings.md should hold for the report at ``report_path``."""
    return render(json.loads(report_path.read_text(encoding="utf-8")), shown_path(report_path))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Write docs/findings.md from an evaluation report.json.")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="the report to read (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the file to write (default: docs/findings.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file differs from what would be written")
    args = parser.parse_args(argv)
    text = build(args.report)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            command = COMMAND
            if args.report != DEFAULT_REPORT:
                command += f" --report {shown_path(args.report)}"
            if args.out != DEFAULT_OUT:
                command += f" --out {shown_path(args.out)}"
            print(f"{shown_path(args.out)} is stale: run `{command}` to regenerate it from {shown_path(args.report)}.", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
