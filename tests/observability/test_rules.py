"""The shipped alert rules: promtool accepts them, their unit tests pass, and those unit tests
would catch the mistakes that matter (an alert that fires at once instead of after its `for:`,
or that fires on everything); every alert carries what an on-call person needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool
from tests.observability.promql import (
    OPERATIONS,
    RULE_TESTS,
    RULES,
    alerts,
    anchors,
    non_filtering,
    rules,
)

RUNBOOKS = "https://github.com/turnout-dev/turnout/blob/main/docs/operations.md#"
SEVERITIES = {"warning", "critical"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool("promtool", "/usr/bin/promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


@pytest.mark.slow
def test_the_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def mutated(tmp_path: Path, alert: str, change: str) -> subprocess.CompletedProcess[str]:
    """promtool's unit tests run against a copy of the rules where one alert is changed."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                if change == "no for":
                    rule.pop("for")
                else:  # fires on every series it looks at, whatever the threshold
                    rule["expr"] = non_filtering(rule["expr"])
    (tmp_path / RULES.name).write_text(yaml.safe_dump(document, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return promtool("test", "rules", str(tmp_path / RULE_TESTS.name))


@pytest.mark.slow
@pytest.mark.parametrize("alert", [a["alert"] for a in alerts() if "for" in a])
def test_the_unit_tests_catch_an_alert_without_its_for(tmp_path: Path, alert: str) -> None:
    done = mutated(tmp_path, alert, "no for")
    assert done.returncode == 1 and f"alertname: {alert}," in done.stderr, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "alert", [a["alert"] for a in alerts() if non_filtering(a["expr"]) != a["expr"]]
)
def test_the_unit_tests_catch_an_alert_that_ignores_its_threshold(
    tmp_path: Path, alert: str
) -> None:
    done = mutated(tmp_path, alert, "always")
    assert done.returncode == 1 and f"alertname: {alert}," in done.stderr, done.stdout + done.stderr


def test_every_alert_says_how_bad_what_and_where_to_look() -> None:
    found = {}
    for alert in alerts():
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, alert["alert"]
        found[alert["alert"]] = annotations["runbook_url"]
    assert found == {name: RUNBOOKS + name.lower() for name in found}
    assert sorted(found) == sorted([
        "TurnoutHighErrorRatio", "TurnoutHighLatencyP99", "TurnoutDriftDetected",
        "TurnoutLiveQualityDegraded", "TurnoutLiveQualityBelowTraining", "TurnoutRolloutAborted",
        "TurnoutModelDeploymentDegraded", "TurnoutRetrainingFailed",
        "TurnoutOperatorDown", "TurnoutOperatorNoLeader",
    ])  # fmt: skip


def test_every_runbook_link_lands_on_a_heading_of_the_operations_guide() -> None:
    headings = anchors(OPERATIONS.read_text())
    missing = [
        a["alert"]
        for a in alerts()
        if a["annotations"]["runbook_url"].split("#")[1] not in headings
    ]
    assert missing == [], f"docs/operations.md has no heading for {missing}"


def test_every_alert_has_unit_tests_of_it_firing_and_not_firing() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]  # fmt: skip
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    names = {a["alert"] for a in alerts()}
    assert (fires, silent) == (names, names)


def test_serving_alerts_do_not_depend_on_a_job_name() -> None:
    """Model pods are scraped by whatever job the user's PodMonitor or scrape config names."""
    for alert in alerts():
        if alert["group"] == "turnout-serving":
            assert "job" not in alert["expr"], alert["alert"]
        else:
            assert 'job="turnout-operator"' in alert["expr"], alert["alert"]
