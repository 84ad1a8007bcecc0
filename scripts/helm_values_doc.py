"""The values reference of docs/helm.md and of the chart's own README (what `helm show readme`
prints), generated from the `# --` comments of the chart's values.yaml (the helm-docs
convention), so neither table can drift from the chart.

A `# -- text` comment (continued by the `# ` lines right after it) documents the key on the next
line; the row shows the key's full dotted path, its type and its default from the parsed YAML. A
documented map or list is one row (its children need no comment of their own); every other value
must be documented, or this script fails naming it.

    python scripts/helm_values_doc.py            # print the table
    python scripts/helm_values_doc.py --write    # replace it in docs/helm.md and the chart README
    python scripts/helm_values_doc.py --check    # exit 1 if either is stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from generated_section import apply, parser, with_section  # scripts/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "charts" / "turnout" / "values.yaml"
# Each holds the table between the markers below.
DOCS = (ROOT / "docs" / "helm.md", ROOT / "charts" / "turnout" / "README.md")
BEGIN = "<!-- generated: begin (scripts/helm_values_doc.py) -->"
END = "<!-- generated: end -->"

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(\s|$)")
_DOC = re.compile(r"^\s*# -- ?(?P<text>.*)$")
_MORE = re.compile(r"^\s*# ?(?P<text>.*)$")


def described_keys(text: str) -> dict[str, str]:
    """Dotted path -> description, for every key with a `# --` comment right above it."""
    found: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        if (doc := _DOC.match(line)) is not None:
            pending = [doc["text"].strip()]
        elif pending is not None and (more := _MORE.match(line)) is not None:
            pending.append(more["text"].strip())
        elif (key := _KEY.match(line)) is not None:
            indent = len(key["indent"])
            while parents and parents[-1][0] >= indent:
                parents.pop()
            parents.append((indent, key["key"]))
            if pending is not None:
                found[".".join(k for _, k in parents)] = " ".join(pending)
            pending = None
        else:
            pending = None  # a description belongs to the line right below it
    return found


def leaves(values: Any, path: str = "") -> list[str]:
    """Dotted paths of the values a user sets: scalars, lists, and empty maps."""
    if isinstance(values, dict) and values:
        return [leaf for k, v in values.items() for leaf in leaves(v, f"{path}.{k}".lstrip("."))]
    return [path]


def lookup(values: Any, path: str) -> Any:
    for key in path.split("."):
        values = values[key]
    return values


def type_name(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}
    return names.get(type(value), "string")


def table(text: str) -> str:
    values = yaml.safe_load(text)
    described = described_keys(text)
    undocumented = [
        leaf for leaf in leaves(values)
        if not any(leaf == d or leaf.startswith(f"{d}.") for d in described)
    ]  # fmt: skip
    if undocumented:
        raise SystemExit(f"values without a `# --` description: {', '.join(undocumented)}")
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for path, description in described.items():
        value = lookup(values, path)
        default = json.dumps(value, separators=(",", ":")).replace("|", "\\|")
        rows.append(f"| `{path}` | {type_name(value)} | `{default}` | "
                    f"{description.replace('|', chr(92) + '|')} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def with_table(doc: str, generated: str) -> str:
    return with_section(doc, generated, BEGIN, END)


def main() -> int:
    args = parser(__doc__.split("\n\n")[0], DOCS, ROOT).parse_args()
    return apply(args, table(VALUES.read_text()), DOCS, ROOT, BEGIN, END, "helm_values_doc.py")


if __name__ == "__main__":
    sys.exit(main())
