"""Developer tool: the killed share of each mutated module after ``make mutation``, and the mutants that survived.

Usage::

    .venv/bin/python -m scripts.mutation_score          # after `mutmut run` has filled mutants/

mutmut keeps one verdict per mutant in ``mutants/<module>.meta``. A mutant counts as killed when a test failed, the run
hit its time limit, or the test process was killed (mutmut's "segfault": a mutant that loops forever appending to a list
is stopped by the kernel before the time limit), since each means the tests did not pass under the mutant; every other
verdict, "no tests" included, counts against the score, so the share is never flattered by untested code.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

MUTANTS = Path("mutants")
KILLED = ("killed", "timeout", "segfault")


def verdicts(meta: Path) -> dict[str, str]:
    """Each mutant's status (``killed``, ``survived``, ``no tests``, ...) from one module's ``.meta`` file."""
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def main() -> int:
    metas = sorted(MUTANTS.glob("**/*.py.meta"))
    if not metas:
        print("No mutation results in mutants/; run `make mutation` first.", file=sys.stderr)
        return 1
    total = Counter()
    survivors: list[str] = []
    for meta in metas:
        status = verdicts(meta)
        counts = Counter(status.values())
        total.update(counts)
        killed = sum(counts[name] for name in KILLED)
        others = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()) if name not in KILLED)
        module = meta.relative_to(MUTANTS).as_posix().removesuffix(".meta")
        print(f"{module:32s} {killed:4d}/{len(status):4d} killed ({killed / max(len(status), 1):6.1%}){'; ' + others if others else ''}")
        survivors += [f"  {name}: {state}" for name, state in sorted(status.items()) if state not in KILLED]
    killed = sum(total[name] for name in KILLED)
    print(f"{'all':32s} {killed:4d}/{sum(total.values()):4d} killed ({killed / max(sum(total.values()), 1):6.1%})")
    if survivors:
        print("not killed (see one with `mutmut show NAME`):", *survivors, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
