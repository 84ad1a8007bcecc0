"""README.md's "Where turnout differs on purpose" table, generated from the `Difference` records
of tests/parity (`all_differences()`), each of which a test checks against `mlflow models serve`'s
own code, so the table lists only differences that exist.

    python scripts/parity_table.py            # print the table
    python scripts/parity_table.py --write    # replace it in README.md
    python scripts/parity_table.py --check    # exit 1 if README.md is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "README.md"
BEGIN = "<!-- differences:start -->"
END = "<!-- differences:end -->"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from generated_section import apply, parser, with_section  # noqa: E402  (scripts/ is on sys.path)

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
    return with_section(doc, generated, BEGIN, END)


def main() -> int:
    args = parser(__doc__.split("\n\n")[0], [DOC], ROOT).parse_args()
    return apply(args, table(all_differences()), [DOC], ROOT, BEGIN, END, "parity_table.py")


if __name__ == "__main__":
    sys.exit(main())
