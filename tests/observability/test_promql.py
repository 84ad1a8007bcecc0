"""The rewrites the live test relies on (promql.py) do exactly what its docstring says."""

from __future__ import annotations

import pytest

from tests.observability.promql import anchors, non_filtering, substitute, variables_used


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("a > 0.05", "a > bool 0.05"),
        ("a / b > 0.05 and b > 0.1", "a / b > bool 0.05 and b > bool 0.1"),
        ("x > 1.25 * min_over_time(x[1d]) or y < max_over_time(y[1d]) - 0.05",
         "x > bool 1.25 * min_over_time(x[1d]) or y < bool max_over_time(y[1d]) - 0.05"),
        ("sum by (job) (up{job=\"op\"}) == 0 or absent(up{job=\"op\"})",
         "sum by (job) (up{job=\"op\"}) == bool 0 or absent(up{job=\"op\"})"),
        # label matchers and strings are left alone, and so is an existing bool
        ('m{code!="500", le=~"0.5|1"} >= 2', 'm{code!="500", le=~"0.5|1"} >= bool 2'),
        ("label_replace(m, \"d\", \"<$1>\", \"s\", \"(.*)\") <= 3",
         "label_replace(m, \"d\", \"<$1>\", \"s\", \"(.*)\") <= bool 3"),
        ("a != bool 1", "a != bool 1"),
        ("rate(m[5m])", "rate(m[5m])"),
    ],
)  # fmt: skip
def test_comparisons_stop_filtering(expr: str, expected: str) -> None:
    assert non_filtering(expr) == expected


def test_grafana_variables_are_found_and_replaced_in_all_their_forms() -> None:
    expr = 'rate(m{a=~"$namespace", b="${model}", c="${version:regex}", d="[[pod]]"}[$__rate_interval])'
    assert variables_used(expr) == {"namespace", "model", "version", "pod", "__rate_interval"}
    values = {"namespace": "ns", "model": "(A|B)", "version": "1", "pod": "p",
              "__rate_interval": "1m"}  # fmt: skip
    assert substitute(expr, values) == 'rate(m{a=~"ns", b="(A|B)", c="1", d="p"}[1m])'
    with pytest.raises(KeyError, match=r"no value for \$pod"):
        substitute(expr, {k: v for k, v in values.items() if k != "pod"})


def test_anchors_are_githubs() -> None:
    text = "# Operating turnout\n## Alerts\n### TurnoutHighErrorRatio\n## What a rollout does\n"
    assert anchors(text) == {
        "operating-turnout", "alerts", "turnouthigherrorratio", "what-a-rollout-does",
    }  # fmt: skip
