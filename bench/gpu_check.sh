#!/usr/bin/env bash
# Every GPU check in one go, from the repository root; the steps' time limits keep the whole run within 8 minutes:
#   1. the GPU, the driver, and the torch/CUDA/transformers versions;
#   2. `pytest -m gpu tests/test_gpu.py`: CUDA against the CPU on tiny models of every family (float32 and bfloat16);
#   3. a reduced `build` of the built-in model on the GPU, into a temporary results folder, timed stage by stage;
#   4. a reduced `evaluate` of that build on the GPU, timed stage by stage;
#   5. `python -m bench.bench_gpu --big`: decode speed, a live knockout and peak memory (built-in, Llama 3.2 1B and 3B shapes).
# Each step has a time limit (LIMIT_* below, 470 s in all) and the steps after a failed one still run (evaluate needs
# the build), so one run reports everything; the exit status is 1 if any step failed or ran out of time, else 0.
# Without a CUDA GPU the tests skip, and the build, evaluate and bench are skipped unless `--cpu` asks for them on the CPU
# (the bench then without the bigger shapes).
# Uses .venv/bin/python where it exists, else python. Usage: bash bench/gpu_check.sh [--cpu]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LIMIT_TESTS=140
LIMIT_BUILD=180
LIMIT_EVALUATE=90
LIMIT_BENCH=60

PY=python
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
ON_CPU=0
for arg in "$@"; do
  case "$arg" in
    --cpu) ON_CPU=1 ;;
    *) echo "usage: bash bench/gpu_check.sh [--cpu]" >&2; exit 2 ;;
  esac
done

FAILED=()
LAST_RC=0
step() {  # step NAME LIMIT_S COMMAND...: run COMMAND within LIMIT_S seconds, print its time, note a failure (and LAST_RC)
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo
  echo "== $name (limit ${limit} s)"
  LAST_RC=0
  timeout "$limit" "$@" || LAST_RC=$?
  if [ "$LAST_RC" -eq 124 ]; then echo "-- $name: ran out of its ${limit} s"; fi
  echo "-- $name: $((SECONDS - start)) s, exit $LAST_RC"
  if [ "$LAST_RC" -ne 0 ]; then FAILED+=("$name (exit $LAST_RC)"); fi
  return 0
}
finish() {
  echo
  if [ "${#FAILED[@]}" -eq 0 ]; then
    echo "== no step failed ($SECONDS s)"
    exit 0
  fi
  echo "== failed ($SECONDS s): ${FAILED[*]}"
  exit 1
}

echo "== machine"
if command -v nvidia-smi > /dev/null; then nvidia-smi || true; else echo "nvidia-smi: not found"; fi
"$PY" - <<'EOF'
import platform

import torch
import transformers

print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA build {torch.version.cuda}), transformers {transformers.__version__}")
if torch.cuda.is_available():
    print(f"CUDA GPU: {torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
elif torch.version.cuda is None:
    print(f"no CUDA GPU visible: torch {torch.__version__} is a CPU-only build (requirements.txt pins one); on a GPU machine install "
          "a CUDA build of the same torch version first")
else:
    print("no CUDA GPU visible to this CUDA build of torch")
EOF
HAS_CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')

step "GPU tests" "$LIMIT_TESTS" "$PY" -m pytest -q -rs -m gpu tests/test_gpu.py

if [ "$HAS_CUDA" = 1 ]; then
  DEVICE=cuda
elif [ "$ON_CPU" = 1 ]; then
  DEVICE=cpu
  echo
  echo "no CUDA GPU: --cpu runs the build, evaluate and bench on the CPU (the limits are for a GPU: expect them to run out)"
else
  echo
  echo "no CUDA GPU: skipping the GPU build, evaluate and bench"
  finish
fi

RESULTS=$(mktemp -d)
trap 'rm -rf "$RESULTS"' EXIT
export EMO_CHECK_DEVICE=$DEVICE EMO_CHECK_RESULTS=$RESULTS

# Sizes of tests/test_pipeline.py's tiny build, grown for the real model; every stage runs, on fewer prompts.
step "reduced build ($DEVICE)" "$LIMIT_BUILD" "$PY" - <<'EOF'
import os
import time
from pathlib import Path

from emo_core.attribution import CausalSettings
from emo_core.pipeline import BuildSettings, build
from emo_core.prepared import PrepareSettings

settings = BuildSettings(
    batch_size=36,
    importance_prompts=8,
    umap_epochs=20,
    probe_folds=2,
    skeletons=8,
    tuning_prompts=2,
    mean_prompts=24,
    causal=CausalSettings(prompts=2, harm_prompts=4),
    prepare=PrepareSettings(prompts=3, max_new_tokens=12),
)
start, seen = time.perf_counter(), set()


def progress(stage: str, done: int, total: int) -> None:
    if stage not in seen:
        seen.add(stage)
        print(f"  {time.perf_counter() - start:6.1f} s  {stage}", flush=True)


folder = build("default", root=Path(os.environ["EMO_CHECK_RESULTS"]), device=os.environ["EMO_CHECK_DEVICE"], settings=settings, progress=progress)
print(f"build: {time.perf_counter() - start:.1f} s, written to {folder}")
EOF

if [ "$LAST_RC" -eq 0 ]; then
  step "reduced evaluate ($DEVICE)" "$LIMIT_EVALUATE" "$PY" - <<'EOF'
import json
import os
import time
from pathlib import Path

from emo_core.evaluation import EvalSettings, evaluate
from emo_core.knockout_curves import CurveSettings

curves = CurveSettings(prompts=1, draws=1, target_draws=2, ks=(1, 2), harm_prompts=1, judged_prompts=2, judged=(("neuron", 2),), bootstrap=100)
settings = EvalSettings(skeletons=1, bootstrap=100, curves=curves, prepared_tokens=12)
start, seen = time.perf_counter(), set()


def progress(stage: str, done: int, total: int) -> None:
    if stage not in seen:
        seen.add(stage)
        print(f"  {time.perf_counter() - start:6.1f} s  {stage}", flush=True)


root = Path(os.environ["EMO_CHECK_RESULTS"])
report = evaluate("default", root=root, device=os.environ["EMO_CHECK_DEVICE"], settings=settings, progress=progress)
print(f"evaluate: {time.perf_counter() - start:.1f} s; steering on target:", json.dumps({m: round(s["overall"], 3) for m, s in report["steering"].items()}))
EOF
else
  echo
  echo "== reduced evaluate ($DEVICE): skipped, the build failed"
  FAILED+=("reduced evaluate (skipped: no build)")
fi

BIG=--big
if [ "$DEVICE" = cpu ]; then BIG=; fi  # on the CPU the built-in model only: the 3B shape alone needs minutes there
step "bench ($DEVICE)" "$LIMIT_BENCH" "$PY" -m bench.bench_gpu --device "$DEVICE" ${BIG:+"$BIG"}

finish
