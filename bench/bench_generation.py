"""Generation and loading speed of the embedded model, as ratios measured in one run.

Prints: the CPU, which decode layout ``emo_core.fastpath`` chose and why, tokens/s of plain
``model.generate`` (batch 1, and per row of batch 2) and of our decode loop (batch 1 under the
chosen layout and under each forced one; fp32, 48 tokens), the ratio to the memory-bandwidth
ceiling, the cost of hooks that do nothing, a side-by-side baseline + ablated generation against one
plain batch-1 generation, and load times from the GGUF and from the saved safetensors copy (fresh
processes, imports included). Timings are interleaved (one round runs every variant once) and the
median of ``REPEATS`` rounds counts, so load from other processes hits all variants alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import emo_core as ec
from emo_core import fastpath
from emo_core.generation import encode

TOKENS = 48
REPEATS = 3
SETTINGS = ec.GenerationSettings(max_new_tokens=TOKENS, min_new_tokens=TOKENS)
LOAD_SNIPPET = "import time, emo_core; t = time.perf_counter(); emo_core.load_model(); print(time.perf_counter() - t)"


def interleaved(runs: dict[str, Callable[[], object]], repeats: int = REPEATS) -> dict[str, float]:
    """Median wall time of each run over ``repeats`` rounds that run every variant once, after one warm-up round."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def best_of(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median wall time of ``repeats`` runs after one warm-up."""
    return interleaved({"run": run}, repeats)["run"]


def cpu_name() -> str:
    """The CPU's model name and whether it has AVX-512, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    name = next((value.strip() for key, value in fields.items() if key.strip() == "model name"), "unknown CPU")
    flags = next((value.split() for key, value in fields.items() if key.strip() == "flags"), [])
    return f"{name}, {'with' if 'avx512f' in flags else 'without'} avx512f"


def read_bandwidth_gb_s() -> float:
    """Memory read bandwidth of this machine, from summing a 1 GB tensor."""
    big = torch.ones(256 * 1024 * 1024)
    seconds = best_of(lambda: big.sum())
    return big.numel() * 4 / seconds / 1e9


def timed_process(env: dict[str, str]) -> tuple[float, float]:
    """(load_model seconds, whole process seconds) of a fresh interpreter."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def noop_hooks(bundle: ec.ModelBundle) -> list[torch.utils.hooks.RemovableHandle]:
    """One do-nothing pre-hook on every head and neuron site: the pure cost of being hooked."""
    handles = []
    for layer in range(bundle.shape.n_layers):
        for module in (bundle.adapter.attn_out(layer), bundle.adapter.mlp_out(layer)):
            handles.append(module.register_forward_pre_hook(lambda module, args: None))
    return handles


def main() -> None:
    bundle = ec.load_model()
    prompt = ec.chat_prompt(
        bundle, "I returned a jacket at the mall\nThe clerk refunded me in cash.", "Keep the reply to at most two sentences."
    )
    batch, batch2 = encode(bundle, [prompt]), encode(bundle, [prompt, prompt])
    ablation = [ec.HeadAblation(((10, 3), (14, 5))), ec.NeuronAblation(((12, 100), (20, 7)))]
    choice = fastpath.layout_choice(bundle.model)  # measured here, before any timing, as the first decode would

    def hf_generate(inputs: dict[str, torch.Tensor]) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return bundle.model.generate(**inputs, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)

        return run

    def ours(layout: fastpath.Layout | None, rows: int = 1) -> Callable[[], object]:
        def run() -> object:
            with fastpath.forced_layout(layout):  # None: the layout measured for this model (or EMO_DECODE_LAYOUT)
                return ec.generate(bundle, [prompt] * rows, SETTINGS)

        return run

    def hooked() -> object:
        handles = noop_hooks(bundle)
        try:
            return ec.generate(bundle, [prompt], SETTINGS)
        finally:
            for handle in handles:
                handle.remove()

    times = interleaved(
        {
            "hf": hf_generate(batch),
            "hf2": hf_generate(batch2),
            "ours": ours(None),
            "plain": ours("plain"),
            "columns": ours("columns"),
            "hooked": hooked,
            "ablated": lambda: ec.generate(bundle, [prompt], SETTINGS, ablation),
            "side": lambda: ec.side_by_side(bundle, prompt, SETTINGS, ablation),
            "ours2": ours(None, rows=2),
        }
    )
    hf, ours_1 = times["hf"], times["ours"]

    weight_bytes = sum(p.numel() * p.element_size() for p in bundle.model.parameters() if p.data_ptr() != 0)
    bandwidth = read_bandwidth_gb_s()
    ceiling = bandwidth * 1e9 / weight_bytes

    with tempfile.TemporaryDirectory() as empty_cache:
        gguf_load, gguf_process = timed_process({**os.environ, "EMO_CACHE_DIR": empty_cache})
    copy_load, copy_process = timed_process(dict(os.environ))

    print(f"cpu: {cpu_name()}")
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"decode layout: {choice.why}; measuring took {choice.calibration_ms:.0f} ms")
    print(f"weights {weight_bytes / 1e6:.0f} MB fp32, read bandwidth {bandwidth:.1f} GB/s -> ceiling {ceiling:.1f} tokens/s")
    for label, seconds in (
        ("plain model.generate, batch 1          ", hf),
        ("plain model.generate, batch 2 (per row)", times["hf2"]),
        ("emo_core.generate, batch 1             ", ours_1),
        ("emo_core.generate, batch 1, plain      ", times["plain"]),
        ("emo_core.generate, batch 1, columns    ", times["columns"]),
    ):
        rate = TOKENS / seconds  # per row: each row of a batch gets TOKENS tokens
        print(
            f"{label}: {rate:5.1f} tokens/s per row ({seconds * 1000 / TOKENS:.0f} ms/step), {rate / ceiling:.2f} of ceiling, "
            f"{hf / seconds:.2f}x the speed of plain model.generate batch 1"
        )
    print(f"do-nothing hooks on all {2 * bundle.shape.n_layers} sites / no hooks: {times['hooked'] / ours_1:.3f}x")
    print(f"ablated (2 heads + 2 neurons) / no intervention:        {times['ablated'] / ours_1:.3f}x")
    print(f"side-by-side baseline+ablated ({TOKENS} tokens) / plain model.generate batch 1: {times['side'] / hf:.2f}x")
    print(f"side-by-side baseline+ablated / emo_core.generate batch 1:                 {times['side'] / ours_1:.2f}x")
    print(f"batch-2 rows via emo_core.generate / emo_core.generate batch 1:           {times['ours2'] / ours_1:.2f}x")
    print(f"load from GGUF (first run): {gguf_load:.1f} s in-process, {gguf_process:.1f} s with imports")
    print(f"load from saved copy:       {copy_load:.1f} s in-process, {copy_process:.1f} s with imports")


if __name__ == "__main__":
    main()
