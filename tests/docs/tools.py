"""What a command line may say, read from the programs themselves, never from a list of ours.

Our own programs are asked through their argparse parsers: `turnout-serve` and `turnout-operator`
in this process (`parser()` of their `cli` modules), scripts in a child process that runs the
script until its parser has parsed, and not a step further (`parse_only.py`). Other programs
(helm, kubectl, mlflow, curl, pip, pytest, promtool) are asked for `--help`: an option is what a
help line starts with (`-n, --namespace string`, `--filename=[]:`, `-m, --model-uri URI`), a
subcommand what a `... Commands:` section lists.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT
from tests.docs.parse_only import argparse_options

PARSE_ONLY = Path(__file__).with_name("parse_only.py")
_OPTION = re.compile(r"(?:^|[\s,/=\[])(--?[A-Za-z0-9?][\w.-]*)")
_COMMANDS_HEADER = re.compile(r"^(\S.*)?Commands\b[^:]*:\s*$")
_SUBCOMMAND = re.compile(r"^ {2,4}([a-z][\w-]*)(?:\s|$)")


@dataclass(frozen=True)
class Grammar:
    """The options and subcommands one (sub)command accepts."""

    options: frozenset[str]
    subcommands: frozenset[str] = frozenset()
    takes_value: frozenset[str] = frozenset()  # options followed by a value, when known


@dataclass
class Parsed:
    """A command line held against its program: the options it used that the program lacks, and
    the program's own complaint about the line (None when it parsed)."""

    unknown: list[str] = field(default_factory=list)
    error: str | None = None


def flags(argv: Iterable[str]) -> list[str]:
    """The options a command line uses, as written (`--set=x` is `--set`), up to `--`."""
    used = []
    for token in argv:
        if token == "--":
            break
        if token.startswith("-") and len(token) > 1 and not token[1:2].isdigit():
            used.append(token.split("=", 1)[0])
    return used


def unknown(used: Iterable[str], options: Iterable[str]) -> list[str]:
    """Options of `used` that `options` lacks. A short option may carry its value (`-oyaml`) or
    group others (`-sS`), so `-xyz` is known when `-x` is."""
    known = set(options)
    return [
        flag for flag in used
        if flag not in known
        and not (not flag.startswith("--") and len(flag) > 2 and flag[:2] in known)
    ]  # fmt: skip


# --- argparse, in this process and in a child ---------------------------------------------------


def hold_against_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Parsed:
    """`argv` parsed by `parser` itself; its error message, if any, as argparse prints it."""
    parsed = Parsed(unknown(flags(argv), argparse_options(parser, argv)))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(list(argv))
        except SystemExit as exc:
            if exc.code:
                parsed.error = stderr.getvalue().strip()
    return parsed


def hold_against_script(target: str, argv: Sequence[str]) -> Parsed:
    """`argv` parsed by the argparse parser of a script (`scripts/x.py`) or module (`-m pkg.mod`),
    which runs in a child process only until it has parsed its command line."""
    done = subprocess.run(
        [sys.executable, str(PARSE_ONLY), target, *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{target} {' '.join(argv)}: {done.stderr.strip()[-2000:]}"
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return Parsed(unknown(flags(argv), answer["options"]), answer["error"])


# --- everything else: --help ----------------------------------------------------------------------


@functools.cache
def help_text(program: str, *path: str) -> str:
    if Path(program).name == "curl":
        command = [program, "--help", "all"]
    else:
        command = [program, *path, "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    text = done.stdout + done.stderr
    if Path(program).name == "kubectl":  # global options are listed apart
        text += subprocess.run([program, "options"], capture_output=True, text=True,
                               timeout=60, check=False).stdout  # fmt: skip
    assert done.returncode == 0 and text.strip(), f"{program} {' '.join(path)} --help: {text}"
    return text


def grammar(help: str) -> Grammar:
    """Options and subcommands from a help text."""
    options: set[str] = set()
    takes_value: set[str] = set()
    subcommands: set[str] = set()
    in_commands = False
    for line in help.splitlines():
        if _COMMANDS_HEADER.match(line):
            in_commands = True
            continue
        if not line.strip() or not line[0].isspace():
            in_commands = False
        if in_commands and (command := _SUBCOMMAND.match(line)):
            subcommands.add(command[1])
        stripped = line.strip()
        if not line[:1].isspace() or not stripped.startswith("-"):
            continue
        head = re.split(r"\s{2,}|\t", stripped, maxsplit=1)[0]  # the options, not their help
        named = _OPTION.findall(head)
        options.update(named)
        # pflag (helm): `--timeout duration`; kubectl: `--filename=[]:`, booleans `=false:`
        value = re.search(r"--[\w-]+(?: ([a-zA-Z]+)\b|=(\S*):$)", head)
        if value and (value[1] or value[2] not in ("false", "true")):
            takes_value.update(named)
    return Grammar(frozenset(options), frozenset(subcommands), frozenset(takes_value))


def command_path(program: str, argv: Sequence[str]) -> tuple[str, ...]:
    """The subcommands `argv` (without the program) names: `kubectl -n ml get mdep` -> (get,);
    `helm show readme charts/turnout` -> (show, readme). Before the first subcommand, words that
    are none are a global option's values; after it, the first such word ends the path."""
    path: list[str] = []
    for token in argv:
        if token.startswith("-"):
            continue
        if token in grammar(help_text(program, *path)).subcommands:
            path.append(token)
        elif path:
            break
    return tuple(path)


def hold_against_help(program: str, argv: Sequence[str]) -> tuple[tuple[str, ...], Parsed]:
    path = command_path(program, argv)
    options = grammar(help_text(program, *path)).options
    return path, Parsed(unknown(flags(argv), options))


def positionals(program: str, argv: Sequence[str]) -> list[str]:
    """The words of `argv` that are neither options nor their values (pflag programs)."""
    path = command_path(program, argv)
    takes_value = grammar(help_text(program, *path)).takes_value
    words: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token.startswith("-"):
            if "=" not in token and token in takes_value:
                next(tokens, None)
        elif token not in path:
            words.append(token)
    return words
