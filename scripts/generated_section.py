"""A generated section of Markdown files, kept current: the text between two marker lines is
what a generator returns. The generator scripts (`helm_values_doc.py`, `parity_table.py`) share
this command line: no flag prints the section, `--write` replaces it in each file, `--check`
exits 1 naming the files that are stale."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def with_section(doc: str, generated: str, begin: str, end: str) -> str:
    """`doc` with the text between the markers `begin` and `end` replaced by `generated`."""
    start, stop = doc.index(begin) + len(begin), doc.index(end)
    return f"{doc[:start]}\n{generated}{doc[stop:]}"


def parser(description: str, docs: Sequence[Path], root: Path) -> argparse.ArgumentParser:
    names = " and ".join(str(doc.relative_to(root)) for doc in docs)
    parser = argparse.ArgumentParser(description=description)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"update {names}")
    action.add_argument("--check", action="store_true", help="exit 1 if one is stale")
    return parser


def apply(
    args: argparse.Namespace, generated: str, docs: Sequence[Path], root: Path,
    begin: str, end: str, script: str,
) -> int:  # fmt: skip
    """Print `generated`, or write it into `docs`, or check that they hold it already."""
    if not (args.write or args.check):
        print(generated, end="")
        return 0
    stale = []
    for path in docs:
        doc = path.read_text()
        current = with_section(doc, generated, begin, end)
        if args.write:
            path.write_text(current)
        elif current != doc:
            stale.append(str(path.relative_to(root)))
    if stale:
        print(f"stale: {', '.join(stale)}: run python scripts/{script} --write")
        return 1
    return 0
