"""README.md's "Where turnout differs on purpose" table, generated from the `Difference` records
of tests/parity (`all_differences()`), each of which a test checks against `mlflow models serve`'s
own code, so the table lists only differences that exist.

    python scripts/parity_table.py            # print the table
    python scripts/parity_table.py --write    # replace it in README.md
    python scripts/parity_table.py --check    # exit 1 if README.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "README.md"
BEGIN = "<!-- differences:start -->"
END = "<!-- differences:end -->"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.parity.differences import Difference, all_differences  # noqa: E402


def table(differences: list[Difference]) -> str:
    rows = [
        "| Input | Example | `mlflow models serve` | `turnout-serve` | Why |",
        "|---|---|---|---|---|",
    ]
    for d in differences:
        cells = (d.topic, d.example, d.mlflow, d.turnout, d.why)
        rows.append("| " + " | ".join(_cell(text) for text in cells) + " |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def with_table(doc: str, generated: str) -> str:
    """`doc` with the text between the markers replaced by `generated`."""
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return f"{doc[:start]}\n{generated}{doc[end:]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    action.add_argument("--check", action="store_true", help="exit 1 if it is stale")
    args = parser.parse_args()
    generated = table(all_differences())
    if not (args.write or args.check):
        print(generated, end="")
        return 0
    doc = DOC.read_text()
    current = with_table(doc, generated)
    if args.write:
        DOC.write_text(current)
        return 0
    if current != doc:
        print(f"{DOC.relative_to(ROOT)} is stale: run python scripts/parity_table.py --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
