"""Build the labelled evaluation sets, run the analyzers on them, print and write the rate tables.

    python bench/evaluate.py                 # every evaluation, full sets
    python bench/evaluate.py audio.enf       # one analyzer
    python bench/evaluate.py --quick         # the subsets the test suite reruns
    python bench/evaluate.py --check         # recompute, compare with the tables, write nothing

Each module of ``forensics/evaluation`` that defines ``ANALYZER`` and
``evaluate(quick: bool, jobs: int) -> dict`` is one evaluation; what it
returns is the table (``forensics.analyzers._rates`` describes the format),
written to ``forensics/analyzers/rates/<analyzer>.json``. A full run writes
the "indicators" block, a quick run the "quick" block of the same table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


def evaluations() -> dict:
    import forensics.evaluation as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(module, "ANALYZER") and hasattr(module, "evaluate"):
            found[module.ANALYZER] = module
    return found


def print_table(analyzer: str, block: dict) -> None:
    from forensics.analyzers import _rates

    print(f"\n== {analyzer}")
    for line in _rates.limits_for_block(block):
        print("  " + line)


def main(argv=None) -> int:
    import django

    django.setup()
    from forensics.analyzers import _rates
    from forensics.evaluation import tables

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("analyzers", nargs="*", help="analyzer names (default: all with an evaluation)")
    parser.add_argument("--quick", action="store_true", help="the subsets the test suite reruns")
    parser.add_argument("--check", action="store_true", help="compare with the stored tables, write nothing")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    found = evaluations()
    names = args.analyzers or sorted(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        parser.error(f"no evaluation for {', '.join(unknown)}; known: {', '.join(sorted(found))}")
    status = 0
    for name in names:
        start = time.monotonic()
        result = found[name].evaluate(quick=args.quick, jobs=args.jobs)
        key = "quick" if args.quick else "indicators"
        block = result["indicators"]
        print_table(name, {"indicators": block, "set": result.get("set", "")})
        for extra in result.get("report", []):
            print("  " + extra)
        print(f"  ({time.monotonic() - start:.0f} s)")
        stored = _rates.table(name) or {}
        if args.check:
            if json.dumps(stored.get(key), sort_keys=True) != json.dumps(block, sort_keys=True):
                print(f"  DIFFERS from forensics/analyzers/rates/{name}.json [{key}]")
                status = 1
            continue
        data = dict(stored)
        data[key] = block
        if not args.quick:
            for field in ("set", "command", "evaluated"):
                data.pop(field, None)
            data["set"] = result.get("set", "")
            data["command"] = f"python bench/evaluate.py {name}"
            data["report"] = result.get("report", [])
        print(f"  wrote {tables.write(name, data).relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
