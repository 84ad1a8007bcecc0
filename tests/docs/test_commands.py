"""Every command README.md and docs/*.md show works as shown: each is run for real where that is
cheap and safe, or else held against the program's own parser or help, so a flag that does not
exist, a make target, chart value or subcommand that is gone, or a path that moved fails here
with the file and line. What is done with each kind of command, and why, is in `rules.py`; the
run ends with the counts (`conftest.py`)."""

from __future__ import annotations

import pytest

from tests.docs.markdown import CONSOLE, DOCS, SHELL, Command, blocks
from tests.docs.rules import COMMANDS, classify, missing_paths

NOT_COMMANDS = {"yaml", "json", "python", "text", "promql", "toml", "dockerfile", "lua"}


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_command(command: Command) -> None:
    rule = classify(command)
    assert rule is not None, (
        f"{command.where}: `{' '.join(command.argv)}` matches no rule in tests/docs/rules.py: "
        "add one saying whether it runs, has its flags checked, or is left out, and why"
    )
    missing = missing_paths(command)
    assert not missing, f"{command.where}: no {', '.join(missing)} in the repository"
    rule.check(command)


def test_every_code_block_says_what_it_holds() -> None:
    """A block without a language could hold commands no one checks."""
    known = SHELL | CONSOLE | NOT_COMMANDS
    unnamed = [f"{b.path.name}:{b.line} ```{b.lang}" for p in DOCS if p.exists()
               for b in blocks(p) if b.lang not in known]  # fmt: skip
    assert not unnamed, f"code blocks of no known language (one of {sorted(known)}): {unnamed}"
