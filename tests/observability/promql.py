"""What the observability tests read out of the shipped dashboards and rules, and how they turn a
Grafana query or an alert into something a real Prometheus evaluates.

Pure: no I/O but reading the files. The rewrite rules are the documented part of the tests:

* Grafana's variables are replaced by concrete values, the way Grafana renders them
  (`substitute`); `label_values(selector, label)` variables become `count by (label) (selector)`.
* An alert's comparisons are made non-filtering with PromQL's `bool` modifier
  (`non_filtering`): `errors / requests > 0.05` becomes `errors / requests > bool 0.05`. On healthy
  data the alert's expression returns nothing, which would prove nothing; this form returns one
  series per series the alert looks at (0 or 1), so a typo in a metric or label name still gives
  an empty answer. It is "the expression without its threshold", for any shape of expression
  (thresholds that are themselves expressions, `and`/`or` of several comparisons).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from tests.conftest import ROOT

DASHBOARDS = ROOT / "charts" / "turnout" / "dashboards"
RULES = ROOT / "charts" / "turnout" / "rules" / "turnout.rules.yaml"
RULE_TESTS = ROOT / "charts" / "turnout" / "rules" / "turnout.rules.test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Variables Grafana defines itself (https://grafana.com/docs/grafana/latest/dashboards/variables/
# add-template-variables/#global-variables).
GRAFANA_GLOBALS = frozenset({
    "__interval", "__interval_ms", "__rate_interval", "__rate_interval_ms", "__range",
    "__range_s", "__range_ms", "__from", "__to", "__dashboard", "__org", "__user",
    "__name", "__timeFilter",
})  # fmt: skip
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.S)
COMPARISON = re.compile(r"==|!=|>=|<=|>|<")


@dataclass(frozen=True)
class Query:
    """One PromQL query of a dashboard: where it is (for test ids), its text, and the labels the
    panel shows of each series (legend, annotation text, table columns)."""

    where: str
    expr: str
    labels: frozenset[str] = frozenset()


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries(name: str, board: dict[str, Any]) -> list[Query]:
    """Every panel target and every Prometheus annotation of a dashboard."""
    queries = []
    for panel in board["panels"]:
        columns = {  # labels; not Time, Value, or a merged table's "Value #A"
            column
            for step in panel.get("transformations", [])
            for column in step["options"].get("indexByName", {})
            if column != "Time" and not column.startswith("Value")
        }
        for target in panel.get("targets", []):
            shown = columns | template_labels(target.get("legendFormat", ""))
            where = f"{name}: {panel['title']} [{target['refId']}]"
            queries.append(Query(where, target["expr"], frozenset(shown)))
    for mark in board["annotations"]["list"]:
        if "expr" in mark:
            shown = template_labels(mark["titleFormat"] + mark["textFormat"])
            shown |= {key.strip() for key in mark.get("tagKeys", "").split(",") if key.strip()}
            queries.append(
                Query(f"{name}: annotation {mark['name']}", mark["expr"], frozenset(shown))
            )
    return queries


def template_labels(text: str) -> set[str]:
    """Labels a Grafana legend or annotation format shows: {{label}}."""
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))


def annotation_labels(rule: dict[str, Any]) -> set[str]:
    """Labels an alert's annotations show: {{ $labels.label }}."""
    text = " ".join(rule.get("annotations", {}).values())
    return set(re.findall(r"\$labels\.(\w+)", text))


def variable_queries(board: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Query variables as name -> (selector, label) of their `label_values(selector, label)`."""
    found = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"].strip())
            assert match, f"{variable['name']}: not a label_values() query: {variable['query']}"
            found[variable["name"]] = (match.group(1) or "", match.group(2))
    return found


def variables_used(text: str) -> set[str]:
    """Names of the Grafana variables a text refers to ($x, ${x}, ${x:format}, [[x]])."""
    return {next(g for g in match.groups() if g) for match in VARIABLE.finditer(text)}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables by values; a variable without a value is an error."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr}")
        return values[name]

    return VARIABLE.sub(value, expr)


def non_filtering(expr: str) -> str:
    """The expression with `bool` after each comparison operator outside label matchers and
    strings (see the module docstring)."""
    out: list[str] = []
    depth, i = 0, 0  # depth: inside {...}
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            end = i + 1
            while expr[end] != char:
                end += 2 if expr[end] == "\\" else 1
            out.append(expr[i : end + 1])
            i = end + 1
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        match = COMPARISON.match(expr, i) if depth == 0 else None
        if match:
            out.append(match.group())
            i = match.end()
            if not re.match(r"\s*bool\b", expr[i:]):
                out.append(" bool")
            continue
        out.append(char)
        i += 1
    return "".join(out)


def rules() -> list[dict[str, Any]]:
    """Every rule of the rules file, with its group's name under "group"."""
    document = yaml.safe_load(RULES.read_text())
    return [
        {**rule, "group": group["name"]} for group in document["groups"] for rule in group["rules"]
    ]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a markdown file's headings (lowercase, punctuation dropped, spaces to
    dashes)."""
    found = set()
    for line in markdown.splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).lower())
            found.add(text.replace(" ", "-"))
    return found
