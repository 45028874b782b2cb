"""Assemble ``BENCHMARKS.md`` from the per-benchmark results in ``benchmarks/results``.

Usage::

    python -m benchmarks.collect [--results benchmarks/results] [--out BENCHMARKS.md]

Each benchmark writes ``<name>.md`` (command, machine, date, figures, ratios
to its named peers). This puts them, in a fixed order, under one heading, so
``BENCHMARKS.md`` always shows the latest run of every benchmark.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Order of sections in BENCHMARKS.md; any other result follows alphabetically.
ORDER = ("find", "qr_find", "import", "receive", "annotator", "export", "soak")

HEADER = """# Benchmarks

Made by `make bench` (which runs `benchmarks/run.sh`, then this collector). Each
section is the latest run of one benchmark, with its command, the machine and
the date; comparisons with the named peers are ratios from the same run. The
machine is a shared 2-core virtual machine: figures swing with its load, which
each section records.

"""


def collect(results: Path) -> str:
    """Return the Markdown of every ``*.md`` result in ``results``, in :data:`ORDER`."""
    found = {path.stem: path for path in results.glob("*.md")}
    names = [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))
    parts = [HEADER]
    for name in names:
        text = found[name].read_text(encoding="utf-8").strip()
        # demote the result's own title to a section
        if text.startswith("# "):
            text = "#" + text
        parts.append(text + "\n")
    return "\n".join(parts)


def main() -> None:
    """Write BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    text = collect(args.results)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
