"""Build the labelled evaluation sets, run the analyzers on them, print and write the rate tables.

    python bench/evaluate.py                 # every evaluation, full sets
    python bench/evaluate.py audio.enf       # one analyzer
    python bench/evaluate.py --quick         # the subsets the test suite reruns
    python bench/evaluate.py --check         # recompute, compare with the tables, write nothing
    python bench/evaluate.py --markdown      # print the stored tables as Markdown (for the README)

Each module of ``forensics/evaluation`` that defines ``ANALYZER`` and
``evaluate(quick: bool, jobs: int) -> dict`` is one evaluation; what it
returns is the table (``forensics.analyzers._rates`` describes the format),
written to ``forensics/analyzers/rates/<analyzer>.json``. A full run writes
the "indicators" block, a quick run the "quick" block of the same table.
A full run also keeps the evaluation's "report" lines and its "breakdowns"
(tables of rates by a property of the edits the conditions do not cover:
{"title", "columns", "rows", "notes"}), which ``--markdown`` prints after
the rows.
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


def _ci(lo_hi, percent: bool) -> str:
    lo, hi = lo_hi
    return f"{100 * lo:.0f}-{100 * hi:.0f}%" if percent else f"{lo:.3g}-{hi:.3g}"


def markdown(analyzer: str, data: dict) -> str:
    """The stored table of one analyzer as Markdown: one row per indicator and condition."""
    lines = [
        f"**{analyzer}** (evaluated {data.get('evaluated', '?')}; `{data.get('command', '')}`): {data.get('set', '')}",
        "",
    ]
    lines.append("| indicator | condition | found | rate (95% CI) | false alarms | rate (95% CI) |")
    lines.append("|---|---|---|---|---|---|")
    for name, spec in data.get("indicators", {}).items():
        unit = spec.get("false_alarm_unit", "file")
        for row in spec["rows"]:
            cond = ", ".join(f"{k}={v}" for k, v in row["condition"].items())
            found = rate = fa = fa_rate = "-"
            if row.get("positives"):
                found = f"{row['detected']}/{row['positives']}"
                rate = f"{100 * row['detection_rate']:.0f}% ({_ci(row['detection_ci95'], True)})"
            if row.get("negatives"):
                fa = f"{row['false_alarms']} in {row['negatives']:g} {unit}s"
                per_item = isinstance(row["negatives"], int)
                value = (
                    f"{100 * row['false_alarm_rate']:.0f}%"
                    if per_item
                    else f"{row['false_alarm_rate']:.3g}/{unit}"
                )
                fa_rate = f"{value} ({_ci(row['false_alarm_ci95'], per_item)})"
            lines.append(f"| {name} | {cond} | {found} | {rate} | {fa} | {fa_rate} |")
    extras = data.get("report", [])
    if extras:
        lines.append("")
        lines += [f"- {x}" for x in extras]
    for extra in data.get("breakdowns", []):
        lines += ["", *breakdown_lines(extra)]
    return "\n".join(line for line in lines if line is not None) + "\n"


def breakdown_lines(extra: dict) -> list[str]:
    """A breakdown an evaluation adds to its table ({"title", "columns", "rows", "notes"}) as Markdown."""
    columns = extra["columns"]
    lines = [extra["title"], "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in extra["rows"]]
    if extra.get("notes"):
        lines += ["", *(f"- {note}" for note in extra["notes"])]
    return lines


def summary(tables: dict[str, dict]) -> str:
    """One Markdown row per analyzer and indicator, every condition pooled (the per-condition
    rates, which findings quote, differ: see the full tables)."""
    from forensics.evaluation import stats

    lines = [
        "| analyzer | indicator | evaluated | found, all conditions (95% CI) | false alarms |",
        "|---|---|---|---|---|",
    ]
    for analyzer, data in tables.items():
        for name, spec in data.get("indicators", {}).items():
            rows = spec["rows"]
            pos = sum(r["positives"] for r in rows)
            det = sum(r["detected"] for r in rows)
            fa = sum(r["false_alarms"] for r in rows)
            unit = spec.get("false_alarm_unit", "file")
            found = "-"
            if pos:
                found = f"{det}/{pos} = {100 * det / pos:.0f}% ({_ci(stats.wilson(det, pos), True)})"
            alarms = "-"
            measured = [r for r in rows if r["negatives"]]
            if measured:
                # Unedited material can count under several conditions (e.g. each kind of edit
                # an indicator could report), so negatives are not summed: the range of the
                # per-condition rates is shown instead.
                per_item = all(isinstance(r["negatives"], int) for r in measured)
                rates = [r["false_alarm_rate"] for r in measured]
                shown = (lambda x: f"{100 * x:.1f}%") if per_item else (lambda x, u=unit: f"{x:.2f}/{u}")
                alarms = f"{fa} in all; per condition {shown(min(rates))} to {shown(max(rates))}"
            lines.append(f"| {analyzer} | {name} | {data.get('evaluated', '?')} | {found} | {alarms} |")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--markdown", action="store_true", help="print the stored tables, compute nothing")
    parser.add_argument(
        "--summary", action="store_true", help="with --markdown: one row per indicator, all conditions pooled"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        names = args.analyzers or sorted(p.stem for p in _rates.RATES_DIR.glob("*.json"))
        if args.summary:
            print(summary({name: _rates.table(name) or {} for name in names}))
            return 0
        for name in names:
            print(markdown(name, _rates.table(name) or {}))
        return 0

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
        for extra in result.get("breakdowns", []):
            print("\n".join("  " + line for line in breakdown_lines(extra)))
        print(f"  ({time.monotonic() - start:.0f} s)")
        stored = _rates.table(name) or {}
        if args.check:
            differ = tables.differences(json.loads(json.dumps(block)), stored.get(key))
            if differ:
                print(f"  DIFFERS from forensics/analyzers/rates/{name}.json [{key}]:")
                print("\n".join(f"    {line}" for line in differ[:20]))
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
            data["breakdowns"] = result.get("breakdowns", [])
        print(f"  wrote {tables.write(name, data).relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
