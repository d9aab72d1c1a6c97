"""Decode speed, live-knockout time and peak memory on a GPU (or the CPU), for the built-in model and bigger shapes.

Prints a table, one row per model: tokens/s of ``ec.generate`` for a batch of 1 and of 8 rows (32 new tokens, greedy,
every row forced to all 32; the whole call, prefill included, counts), the time of one live knockout (the Knockout
page's side by side on the built-in model: baseline and 8 heads off, 48 tokens each), the peak memory (GPU:
``torch.cuda.max_memory_allocated`` while that model ran; CPU: the process's peak RSS so far, which only grows), and the
device, torch and transformers versions. ``--out`` also writes the results as JSON.

Models: the built-in SmolLM2-135M-Instruct as the app loads it (float32), and random-weight models of the shapes in
``bench/configs`` (Llama 3.2 1B and 3B: the published configs, made with ``from_config`` on the device, so nothing is
downloaded), in bfloat16. Random weights decode as fast as trained ones of the same shape; their replies mean
nothing. They share the built-in model's tokenizer, whose ids (below 49,152) are all inside their 128,256-token
vocabulary. On the CPU the bigger shapes run only with ``--big`` (the 3B one needs about 7 GB of RAM).

Each timing is the median of ``--repeats`` runs after one warm-up run (``bench_generation.interleaved``).

    python -m bench.bench_gpu                  # cuda where available, else cpu (built-in model only)
    python -m bench.bench_gpu --device cpu --big --out results.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerBase

import emo_core as ec
from bench.bench_generation import cpu_name, interleaved

CONFIGS = Path(__file__).parent / "configs"
BIG = (CONFIGS / "llama-3.2-1b.json", CONFIGS / "llama-3.2-3b.json")
TOKENS = 32
DECODE = ec.GenerationSettings(max_new_tokens=TOKENS, min_new_tokens=TOKENS)
KNOCKOUT_TOKENS = 48
KNOCKOUT = ec.GenerationSettings(max_new_tokens=KNOCKOUT_TOKENS, min_new_tokens=KNOCKOUT_TOKENS)
KNOCKED_HEADS = ec.HeadAblation(tuple((layer, 3) for layer in range(15, 23)))  # 8 heads: head 3 of layers 15-22
USERS = (
    "I covered the reception desk for a colleague who had called in sick\nI sent an important client to the wrong floor.",
    "I returned a jacket at the mall\nThe clerk refunded me in cash.",
    "My neighbour borrowed my ladder last spring\nShe brought it back today with a note.",
    "I waited an hour for the bus this morning\nIt finally came.",
    "I baked bread for the first time\nThe loaf came out flat.",
    "My flight was delayed by three hours\nThe airline gave everyone a meal voucher.",
    "I found a wallet on the train\nI handed it to the conductor.",
    "I planted tomatoes in April\nThe first one turned red this week.",
)
SYSTEM = "Keep the reply to at most two sentences."


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, run: Callable[[], object]) -> Callable[[], object]:
    """``run``, returning only once the device has finished its work."""

    def done() -> object:
        result = run()
        synchronize(device)
        return result

    return done


def peak_memory_mib(device: str) -> float:
    """GPU: the most memory allocated since the last reset; CPU: the process's peak RSS so far."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fresh_peak(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def random_model(path: Path, tokenizer: PreTrainedTokenizerBase, device: str) -> ec.ModelBundle:
    """A random-weight bfloat16 model of the shape in ``path``, made on ``device``, with the built-in model's tokenizer."""
    raw = json.loads(path.read_text())
    config = AutoConfig.for_model(**raw)
    if len(tokenizer) > config.vocab_size:
        raise SystemExit(f"{path.name}: vocabulary of {config.vocab_size} is smaller than the tokenizer's {len(tokenizer)}")
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return ec.bundle_from(model, tokenizer, name=f"{path.stem} (random)")


def measure(bundle: ec.ModelBundle, device: str, repeats: int, knockout: bool) -> dict:
    """Tokens/s at batch 1 and 8, and (``knockout``) one live knockout's seconds; the model's parameters and peak memory."""
    prompts = [ec.chat_prompt(bundle, user, SYSTEM) for user in USERS]
    runs = {
        "batch 1": timed(device, lambda: ec.generate(bundle, prompts[:1], DECODE)),
        "batch 8": timed(device, lambda: ec.generate(bundle, prompts, DECODE)),
    }
    if knockout:
        runs["knockout"] = timed(device, lambda: ec.side_by_side(bundle, prompts[0], KNOCKOUT, [KNOCKED_HEADS]))
    seconds = interleaved(runs, repeats)
    return {
        "model": bundle.name,
        "dtype": str(bundle.dtype).removeprefix("torch."),
        "params_m": sum(p.numel() for p in bundle.model.parameters()) / 1e6,
        "tokens_per_s_batch_1": TOKENS / seconds["batch 1"],
        "tokens_per_s_batch_8": 8 * TOKENS / seconds["batch 8"],
        "knockout_s": seconds.get("knockout"),
        "peak_memory_mib": peak_memory_mib(device),
    }


def summary(row: dict) -> str:
    """One measured row as a line, printed as soon as it is measured (the table comes at the end)."""
    knockout = "" if row["knockout_s"] is None else f", live knockout {row['knockout_s']:.2f} s"
    return (
        f"{row['model']}: {row['tokens_per_s_batch_1']:.1f} tok/s at batch 1, {row['tokens_per_s_batch_8']:.1f} at batch 8"
        f"{knockout}, peak memory {row['peak_memory_mib']:.0f} MiB"
    )


def environment(device: str) -> dict:
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else cpu_name(),
        "device_kind": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }


def table(rows: Sequence[dict], memory: str) -> str:
    header = ("model", "dtype", "params (M)", "tok/s b=1", "tok/s b=8", f"knockout s ({KNOCKOUT_TOKENS} tok, 8 heads)", memory)
    lines = [header]
    for row in rows:
        knockout = "-" if row["knockout_s"] is None else f"{row['knockout_s']:.2f}"
        lines.append(
            (
                row["model"],
                row["dtype"],
                f"{row['params_m']:.0f}",
                f"{row['tokens_per_s_batch_1']:.1f}",
                f"{row['tokens_per_s_batch_8']:.1f}",
                knockout,
                f"{row['peak_memory_mib']:.0f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--big", action="store_true", help="on the CPU, also the bigger shapes (always run on a GPU)")
    parser.add_argument("--configs", nargs="+", type=Path, default=list(BIG), help="config.json files of the bigger shapes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the median counts)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"error: no CUDA GPU is visible (torch {torch.__version__}); use --device cpu", file=sys.stderr)
        return 2
    device = args.device
    if device == "cuda":
        torch.set_float32_matmul_precision("highest")  # float32 as the app computes it, no TF32
    env = environment(device)
    print(f"device: {env['device']}; torch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}", flush=True)

    rows = []
    fresh_peak(device)
    start = time.perf_counter()
    bundle = ec.load_model("default", device=device)
    print(f"{bundle.name}: loaded in {time.perf_counter() - start:.1f} s", flush=True)
    rows.append(measure(bundle, device, args.repeats, knockout=True))
    print(summary(rows[-1]), flush=True)
    tokenizer = bundle.tokenizer
    del bundle
    for path in args.configs if device == "cuda" or args.big else []:
        fresh_peak(device)
        start = time.perf_counter()
        bundle = random_model(path, tokenizer, device)
        print(f"{bundle.name}: made in {time.perf_counter() - start:.1f} s", flush=True)
        rows.append(measure(bundle, device, args.repeats, knockout=False))
        print(summary(rows[-1]), flush=True)
        del bundle

    memory = "peak GPU MiB" if device == "cuda" else "peak RSS MiB (process)"
    print()
    print(table(rows, memory))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**env, "tokens": TOKENS, "knockout_tokens": KNOCKOUT_TOKENS, "rows": rows}, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
