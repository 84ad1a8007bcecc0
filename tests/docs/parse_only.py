"""Run a script up to the moment its argparse parser has parsed a command line, and stop there.

    python tests/docs/parse_only.py scripts/demo_models.py --tracking-uri URL diabetes
    python tests/docs/parse_only.py turnout_operator.crd --update-docs docs/crd.md

prints one JSON line: the options of that parser (and of the subcommand the line names) and the
parser's error message, or null when the line parsed. Nothing after the parse runs: the first
`ArgumentParser.parse_args` call raises instead of returning, so a script that trains models or
starts servers does neither. The caller makes sure the script parses its command line with
argparse at all; one that never does would run to its end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class _Parsed(BaseException):
    """Raised in place of parse_args' return: nothing of the script runs after it."""


def argparse_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Every option of `parser` and of the subcommands `argv` names."""
    options: set[str] = set()
    for action in parser._actions:
        options.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name in argv:
                    options |= argparse_options(sub, argv)
    return options


def main() -> int:
    target, *argv = sys.argv[1:]
    original = argparse.ArgumentParser.parse_args
    answer: dict[str, object] = {}

    def parse_then_stop(self: argparse.ArgumentParser, args=None, namespace=None):  # type: ignore[no-untyped-def]
        line = sys.argv[1:] if args is None else list(args)
        stderr = io.StringIO()
        error = None
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                original(self, line, namespace)
            except SystemExit as exc:
                error = stderr.getvalue().strip() if exc.code else None
        answer.update(options=sorted(argparse_options(self, line)), error=error)
        raise _Parsed

    argparse.ArgumentParser.parse_args = parse_then_stop  # type: ignore[method-assign]
    sys.path[:0] = [str(ROOT), str(ROOT / Path(target).parent)]
    sys.argv = [target, *argv]
    try:
        if target.endswith(".py"):
            runpy.run_path(str(ROOT / target), run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except _Parsed:
        print(json.dumps(answer))
        return 0
    print(f"{target} ran to its end without parsing a command line", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
