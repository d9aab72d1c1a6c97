"""Size of the shipped cache and how long it takes to load, in fresh processes.

Prints the folder size against the 40 MB budget, and the median of five cold loads (a new Python
process each time: imports, checksum verification and parsing included) against the 2 s budget.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from bench.bench_generation import cpu_name
from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import cache_folder

SIZE_BUDGET_MB = 40
LOAD_BUDGET_S = 2.0
RUNS = 5
LOAD_SNIPPET = (
    "import time; t = time.perf_counter(); from emo_core.results import load_results; "
    f"load_results({EMBEDDED_NAME!r}); print(time.perf_counter() - t)"
)


def main() -> None:
    folder = cache_folder(EMBEDDED_NAME)
    size_mb = sum(path.stat().st_size for path in folder.iterdir()) / 1e6
    loads = [
        float(subprocess.run([sys.executable, "-c", LOAD_SNIPPET], capture_output=True, text=True, check=True).stdout) for _ in range(RUNS)
    ]
    load = statistics.median(loads)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores")
    print(f"cache folder: {folder}")
    print(f"size: {size_mb:.1f} MB ({size_mb / SIZE_BUDGET_MB:.2f} of the {SIZE_BUDGET_MB} MB budget)")
    print(f"cold load with imports, median of {RUNS}: {load:.2f} s ({load / LOAD_BUDGET_S:.2f} of the {LOAD_BUDGET_S:.0f} s budget)")


if __name__ == "__main__":
    main()
