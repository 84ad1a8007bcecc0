"""The commands a reader copies out of our Markdown, with the file and line they come from.

Commands are every line of a ```bash / ```sh / ```shell block, the `$ ` lines of a ```console
block, and inline code spans that start with a program (`make e2e`, `kubectl get mdep -w`), in
tables too. A shell line is split the way the shell splits it (quotes, `\\` continuations,
comments, `|`, `&&`, `;`, `&`); redirections and leading `NAME=value` assignments are dropped.
A usage synopsis in an inline span (`bench/serving.py [--quick] [--json out.json]`) keeps its
flags and loses its brackets; such a command is only checked for flag names.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

# What a reader of the project reads: the README, the guides, the benchmarks' and the chart's.
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "bench" / "README.md",
               ROOT / "charts" / "turnout" / "README.md"])  # fmt: skip
SHELL = {"bash", "sh", "shell"}
CONSOLE = {"console"}
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
_SPAN = re.compile(r"(?<!`)`(?P<code>[^`]+?)`(?!`)")
_PLACEHOLDER = re.compile(r"<[A-Za-z][^<>`]*>")  # `<operator namespace>`: one word, not `<`/`>`
_OPERATORS = {"|", "||", "&&", ";", "&", "(", ")"}
_REDIRECTIONS = {">", ">>", "<", ">&", "&>", "<<", "<<<"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    lines: tuple[str, ...]  # the block's content


@dataclass(frozen=True)
class Command:
    path: Path
    line: int
    argv: tuple[str, ...]
    synopsis: bool = False  # usage notation: check flag names only, never parse or run

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def id(self) -> str:
        text = " ".join(self.argv)
        return f"{self.where} {text if len(text) <= 60 else text[:57] + '...'}"


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    opened: tuple[int, str, str] | None = None  # line, indent, lang
    content: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = _FENCE.match(line)
        if opened is None and fence:
            opened, content = (number, fence["indent"], fence["lang"]), []
        elif opened is not None and fence and not fence["lang"]:
            found.append(Block(path, opened[0], opened[2], tuple(content)))
            opened = None
        elif opened is not None:
            content.append(line.removeprefix(opened[1]))
    assert opened is None, f"{path.relative_to(ROOT)}:{opened[0]}: code block never closed"
    return found


def commands_of_block(block: Block) -> Iterator[Command]:
    """One Command per shell command of a shell or console block."""
    if block.lang not in SHELL | CONSOLE:
        return
    console = block.lang in CONSOLE
    pending: list[str] = []
    start = 0
    for number, text in enumerate(block.lines, start=block.line + 1):
        if console and pending:  # a continuation: its `> ` prompt is not part of it
            text = text.removeprefix("> ")
        elif console:  # commands are the `$ ` lines; the rest is their output
            if not text.startswith("$ "):
                continue
            text = text[2:]
        if not pending:
            start = number
        pending.append(text)
        joined = "\n".join(pending)
        if joined.endswith("\\") or not _balanced(joined):
            continue  # a continuation line or an open quote: the command goes on
        pending = []
        for argv in split(joined.replace("\\\n", " ")):
            yield Command(block.path, start, argv)
    assert not pending, f"{block.path.relative_to(ROOT)}:{start}: unterminated command"


def inline_commands(path: Path, programs: set[str]) -> Iterator[Command]:
    """Inline code spans outside code blocks whose first word is one of `programs`."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    for block in blocks(path):  # blank the blocks, keeping line numbers
        for i in range(block.line - 1, block.line + len(block.lines) + 1):
            lines[i] = "\n"
    prose = "".join(lines)
    for span in _SPAN.finditer(prose):
        code = span["code"]
        if "\n\n" in code:
            continue  # a stray backtick pairs across paragraphs: not a span
        code = " ".join(code.split())
        synopsis = "[-" in code
        if synopsis:
            code = re.sub(r"\s\|\s", " ", code.replace("[", " ").replace("]", " "))
        try:
            commands = split(code)
        except ValueError:
            continue  # not shell: a quote inside prose
        line = prose.count("\n", 0, span.start()) + 1
        for argv in commands:
            if len(argv) >= 2 and normalized(argv)[0] in programs:
                yield Command(path, line, argv, synopsis)


def split(text: str) -> list[tuple[str, ...]]:
    """The simple commands of a shell line: operators split them, redirections go."""
    text = _PLACEHOLDER.sub("PLACEHOLDER", _without_comments(text))
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands: list[list[str]] = [[]]
    tokens = iter(lexer)
    for token in tokens:
        if token in _OPERATORS:
            commands.append([])
        elif token in _REDIRECTIONS:
            next(tokens, None)
        else:
            commands[-1].append(token)
    simple = []
    for argv in commands:
        while argv and _ASSIGNMENT.match(argv[0]):
            argv.pop(0)
        if argv:
            simple.append(tuple(argv))
    return simple


def normalized(argv: tuple[str, ...]) -> tuple[str, ...]:
    """`.venv/bin/python` and `python3` are `python`; `.venv/bin/pytest` is `pytest`."""
    program = argv[0].removeprefix(".venv/bin/").removeprefix(".tools/bin/")
    return ("python" if program in ("python3", "python3.11") else program, *argv[1:])


def _balanced(text: str) -> bool:
    try:
        shlex.split(_without_comments(text))
    except ValueError:
        return False
    return True


def _without_comments(text: str) -> str:
    """`text` without its shell comments: a `#` that starts a word, outside quotes, to the end of
    its line (shlex would also cut at the `#` of `https://host/#anchor`)."""
    out: list[str] = []
    quote, comment, previous = "", False, "\n"
    for char in text:
        if comment:
            comment = char != "\n"
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            comment = True
        if not comment:
            out.append(char)
        previous = char
    return "".join(out)
