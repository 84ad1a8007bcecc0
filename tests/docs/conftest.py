"""The docs' commands test ends the run with what was done with the commands: how many were
run, flag-checked and left out, and why (tests/docs/rules.py)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [r for rs in terminalreporter.stats.values() for r in rs if hasattr(r, "nodeid")]
    if not any("test_commands.py::test_command[" in r.nodeid for r in reports):
        return
    from tests.docs.rules import summary

    terminalreporter.section("commands in the docs")
    for line in summary():
        terminalreporter.write_line(line)
