"""Generation and loading speed of the embedded model, as ratios measured in one run.

Prints: tokens/s of plain ``model.generate`` and of our decode loop (batch 1, fp32, 48 tokens), the
ratio to the memory-bandwidth ceiling, the cost of hooks that do nothing, a side-by-side
baseline + ablated generation against one plain batch-1 generation, and load times from the GGUF
and from the saved safetensors copy (fresh processes, imports included).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch

import emo_core as ec
from emo_core.generation import encode

TOKENS = 48
REPEATS = 3
SETTINGS = ec.GenerationSettings(max_new_tokens=TOKENS, min_new_tokens=TOKENS)
LOAD_SNIPPET = "import time, emo_core; t = time.perf_counter(); emo_core.load_model(); print(time.perf_counter() - t)"


def best_of(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median wall time of ``repeats`` runs after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    batch = encode(bundle, [prompt])
    ablation = [ec.HeadAblation(((10, 3), (14, 5))), ec.NeuronAblation(((12, 100), (20, 7)))]

    def hf_generate() -> object:
        with torch.inference_mode():
            return bundle.model.generate(**batch, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)

    hf = best_of(hf_generate)
    ours = best_of(lambda: ec.generate(bundle, [prompt], SETTINGS))
    handles = noop_hooks(bundle)
    hooked = best_of(lambda: ec.generate(bundle, [prompt], SETTINGS))
    for handle in handles:
        handle.remove()
    ablated = best_of(lambda: ec.generate(bundle, [prompt], SETTINGS, ablation))
    side = best_of(lambda: ec.side_by_side(bundle, prompt, SETTINGS, ablation))
    naive = best_of(lambda: ec.generate(bundle, [prompt, prompt], SETTINGS, [ec.generation.on_rows(a, (1,)) for a in ablation]))

    weight_bytes = sum(p.numel() * p.element_size() for p in bundle.model.parameters() if p.data_ptr() != 0)
    bandwidth = read_bandwidth_gb_s()
    ceiling = bandwidth * 1e9 / weight_bytes

    with tempfile.TemporaryDirectory() as empty_cache:
        gguf_load, gguf_process = timed_process({**os.environ, "EMO_CACHE_DIR": empty_cache})
    copy_load, copy_process = timed_process(dict(os.environ))

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"weights {weight_bytes / 1e6:.0f} MB fp32, read bandwidth {bandwidth:.1f} GB/s -> ceiling {ceiling:.1f} tokens/s")
    for label, seconds in (("plain model.generate", hf), ("emo_core.generate   ", ours)):
        rate = TOKENS / seconds
        print(f"{label}, batch 1: {rate:5.1f} tokens/s ({seconds * 1000 / TOKENS:.0f} ms/step), {rate / ceiling:.2f} of ceiling")
    print(f"do-nothing hooks on all {2 * bundle.shape.n_layers} sites / no hooks: {hooked / ours:.3f}x")
    print(f"ablated (2 heads + 2 neurons) / no intervention:        {ablated / ours:.3f}x")
    print(f"side-by-side baseline+ablated ({TOKENS} tokens) / plain model.generate batch 1: {side / hf:.2f}x")
    print(f"side-by-side baseline+ablated / emo_core.generate batch 1:                 {side / ours:.2f}x")
    print(f"batch-2 rows via emo_core.generate / emo_core.generate batch 1:           {naive / ours:.2f}x")
    print(f"load from GGUF (first run): {gguf_load:.1f} s in-process, {gguf_process:.1f} s with imports")
    print(f"load from saved copy:       {copy_load:.1f} s in-process, {copy_process:.1f} s with imports")


if __name__ == "__main__":
    main()
