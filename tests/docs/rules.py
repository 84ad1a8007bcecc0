"""What the docs' commands test does with each command: run it, check its flags, or leave it out,
and why. The first rule whose words match the command's first words decides; a command no rule
matches fails the test, so a new kind of command gets a decision instead of a silent pass.

Run for real: `make -n TARGET`, `helm template`/`lint`/`show`, `helm install`/`upgrade` rendered
as `helm template` with the same values, `promtool`, our programs' `--help`. Flags checked
(against the program's own parser or help): commands that need a cluster, a running server, the
package index, or that start servers, train models, write files or run a test suite. Left out
(only the repository paths they name are checked): commands that need a Docker engine.
Every command, whatever its rule, must name only repository paths that exist.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from tests.conftest import BIN, ROOT, require_tool
from tests.docs.markdown import (
    DOCS,
    Command,
    blocks,
    commands_of_block,
    inline_commands,
    normalized,
)
from tests.docs.tools import (
    Parsed,
    hold_against_help,
    hold_against_parser,
    hold_against_script,
    positionals,
)

RAN = "ran"
FLAGS = "flags checked"
LEFT_OUT = "left out"

CLUSTER = "needs a Kubernetes cluster"
SERVER = "needs a running turnout-serve"
SCRIPT = "trains models, starts servers or writes files: parsed by its own parser only"
NO_FILE = "names no chart or rules file: a mention of the command, not a line to run"
DOCKER = "needs a Docker engine (kind runs its nodes in Docker)"
BENCH = "a benchmark, minutes long: parsed by its own parser only"
MLFLOW_SERVER = "starts an MLflow server"


@dataclass(frozen=True)
class Rule:
    words: tuple[str, ...]  # fnmatch patterns for the command's first words
    mode: str  # RAN, FLAGS or LEFT_OUT
    why: str  # why it is not run (FLAGS, LEFT_OUT); what it runs (RAN)
    check: Callable[[Command], None]
    when: Callable[[Command], bool] | None = None

    def matches(self, command: Command) -> bool:
        argv = normalized(command.argv)
        return (
            len(argv) >= len(self.words)
            and all(fnmatch.fnmatchcase(a, w) for a, w in zip(argv, self.words, strict=False))
            and (self.when is None or self.when(command))
        )


def fail_on(command: Command, program: str, parsed: Parsed) -> None:
    line = " ".join(command.argv)
    assert not parsed.unknown, (
        f"{command.where}: `{program}` has no {', '.join(parsed.unknown)} (in `{line}`)"
    )
    if not command.synopsis:  # a synopsis has placeholders for values: names only
        assert parsed.error is None, f"{command.where}: `{line}`: {parsed.error}"


def run(command: Command, argv: list[str], what: str = "") -> str:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, (
        f"{command.where}: `{' '.join(command.argv)}`{what} failed:\n{done.stdout}{done.stderr}"
    )
    return done.stdout


# --- our programs -------------------------------------------------------------------------------


def serve_flags(command: Command) -> None:
    from turnout_serving.cli import parser

    fail_on(command, "turnout-serve", hold_against_parser(parser(), command.argv[1:]))


def operator_flags(command: Command) -> None:
    from turnout_operator.cli import parser

    fail_on(command, "turnout-operator", hold_against_parser(parser(), command.argv[1:]))


def own_help(command: Command) -> None:
    run(command, [str(BIN / command.argv[0]), *command.argv[1:]])


def make_dry_run(command: Command) -> None:
    run(command, ["make", "-n", *command.argv[1:]], " (as `make -n`)")


def script_flags(command: Command) -> None:
    """`python scripts/x.py ARGS` or `python -m module ARGS`, held against the script's parser."""
    argv = normalized(command.argv)[1:]
    module = argv[0] == "-m"
    target, args = (argv[1], argv[2:]) if module else (argv[0], argv[1:])
    source = (ROOT / target) if not module else None
    if source is not None:
        assert source.is_file(), f"{command.where}: no script {target}"
        if "parse_args(" not in source.read_text():
            assert not args, f"{command.where}: {target} takes no arguments: {' '.join(args)}"
            return
    fail_on(command, target, hold_against_script(target, args))


def quickstart_commands(command: Command) -> None:
    """`bash scripts/quickstart.sh [COMMAND]`: the script names its commands when given another."""
    script = ROOT / command.argv[1]
    done = subprocess.run(["bash", str(script), "no-such-command"], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    listed = re.search(r"\(([^()]*)\)\s*$", done.stderr.strip())
    assert done.returncode != 0 and listed, f"{script.name} named no commands: {done.stderr}"
    accepted = set(re.split(r", | or ", listed[1]))
    for word in command.argv[2:]:
        assert word in accepted, f"{command.where}: {script.name} has no command {word!r}"


# --- other programs, through their --help -------------------------------------------------------


def help_flags(program: Callable[[], str]) -> Callable[[Command], None]:
    """A check of a command's options against `program --help` (`program` finds the binary)."""

    def check(command: Command) -> None:
        path, parsed = hold_against_help(program(), command.argv[1:])
        fail_on(command, " ".join([command.argv[0], *path]), parsed)

    return check


def tool(name: str) -> Callable[[], str]:
    return lambda: require_tool(name)


def venv(name: str) -> Callable[[], str]:
    return lambda: str(BIN / name)


def names_file(command: Command) -> bool:
    """The line names a chart or a file of the repository to work on."""
    return any("/" in word and (ROOT / word).exists() for word in command.argv[1:]
               if not word.startswith("-"))  # fmt: skip


def helm_run(command: Command) -> None:
    help_flags(tool("helm"))(command)
    run(command, [require_tool("helm"), *command.argv[1:]])


def helm_render(command: Command) -> None:
    """`helm install|upgrade NAME CHART ...` rendered by `helm template` with the same values:
    the chart is where the line says, and takes those values."""
    help_flags(tool("helm"))(command)
    helm = require_tool("helm")
    release, chart = positionals(helm, command.argv[1:])[:2]
    values: list[str] = []
    tokens = iter(command.argv[2:])
    for token in tokens:
        name = token.split("=", 1)[0]
        if name in ("--set", "--set-string", "--set-json", "-f", "--values", "-n", "--namespace"):
            values += [token] if "=" in token else [token, next(tokens)]
        elif name == "--skip-crds":
            values.append(token)
    run(command, [helm, "template", release, chart, *values], " (as `helm template`)")


def promtool_run(command: Command) -> None:
    run(command, [require_tool("promtool"), *command.argv[1:]])


def nothing_to_run(command: Command) -> None:
    """Left out: only the paths it names are checked (by every rule)."""


def _helm_rules() -> list[Rule]:
    rules = []
    for subcommand, check, what in (
        ("template", helm_run, "rendered"), ("lint", helm_run, "linted"),
        ("show", helm_run, "shown"), ("install", helm_render, "rendered by `helm template`"),
        ("upgrade", helm_render, "rendered by `helm template`"),
    ):  # fmt: skip
        rules.append(Rule(("helm", subcommand), RAN, what, check, when=names_file))
        rules.append(Rule(("helm", subcommand), FLAGS, NO_FILE, help_flags(tool("helm"))))
    return rules


RULES: list[Rule] = [
    Rule(("turnout-serve", "--help"), RAN, "its help", own_help),
    Rule(("turnout-serve",), FLAGS, "serves a model from a registry", serve_flags),
    Rule(("turnout-operator", "run", "--help"), RAN, "its help", own_help),
    Rule(("turnout-operator",), FLAGS, CLUSTER, operator_flags),
    Rule(("make",), RAN, "as `make -n`", make_dry_run),
    Rule(("python", "-m", "turnout_*"), FLAGS, SCRIPT, script_flags),
    Rule(("python", "-m", "tests.real.controlplane"), FLAGS, SCRIPT, script_flags),
    Rule(("python", "-m", "tests.real.cluster"), FLAGS, SCRIPT, script_flags),
    Rule(("python", "-m", "tests.real.node"), FLAGS, SCRIPT, script_flags),
    Rule(("python", "scripts/*.py"), FLAGS, SCRIPT, script_flags),
    Rule(("python", "bench/*.py"), FLAGS, BENCH, script_flags),
    Rule(("pytest",), FLAGS, "runs a test suite", help_flags(venv("pytest"))),
    Rule(("bash", "scripts/quickstart.sh"), FLAGS, DOCKER, quickstart_commands),
    *_helm_rules(),
    Rule(("helm", "uninstall"), FLAGS, CLUSTER, help_flags(tool("helm"))),
    Rule(("kubectl",), FLAGS, CLUSTER, help_flags(tool("kubectl"))),
    Rule(("mlflow", "models", "serve"), FLAGS, MLFLOW_SERVER, help_flags(venv("mlflow"))),
    Rule(("mlflow", "server"), FLAGS, MLFLOW_SERVER, help_flags(venv("mlflow"))),
    Rule(("curl",), FLAGS, SERVER, help_flags(tool("curl"))),
    Rule(("pip", "install"), FLAGS, "needs the package index", help_flags(venv("pip"))),
    Rule(("promtool", "*", "rules"), RAN, "checks the rules", promtool_run, when=names_file),
    Rule(("promtool", "*", "rules"), FLAGS, NO_FILE, help_flags(tool("promtool"))),
    Rule(("kind",), LEFT_OUT, DOCKER, nothing_to_run),
    Rule(("docker",), LEFT_OUT, DOCKER, nothing_to_run),
]
# An inline code span is a command when it starts with one of these (the rules' programs, and
# others a reader could be told to type, which then need a rule of their own).
PROGRAMS = {rule.words[0] for rule in RULES} | {
    "sh", "npm", "git", "go", "apt-get", "sudo", "cd", "export", "source", "uv", "pip3", "brew",
}  # fmt: skip


def classify(command: Command) -> Rule | None:
    return next((rule for rule in RULES if rule.matches(command)), None)


def missing_paths(command: Command) -> list[str]:
    """Words naming a path in the repository that does not exist: words, or `--flag=` values,
    whose first part is a top-level file or folder (`charts/turnout`, `examples/x.yaml`)."""
    top = set(os.listdir(ROOT)) - {".", ".."}
    missing = []
    for word in command.argv[1:]:
        path = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        if path.split("/", 1)[0] in top and not (ROOT / path).exists():
            missing.append(path)
    return missing


def all_commands() -> list[Command]:
    found: list[Command] = []
    for path in DOCS:
        if not path.exists():
            continue
        for block in blocks(path):
            found += commands_of_block(block)
        found += inline_commands(path, PROGRAMS)
    return found


COMMANDS = all_commands()


def summary() -> list[str]:
    """How many commands each mode took, and why: the lines the test run ends with."""
    counts: dict[tuple[str, str], int] = {}
    unmatched = 0
    for command in COMMANDS:
        rule = classify(command)
        if rule is None:
            unmatched += 1
            continue
        counts[rule.mode, rule.why] = counts.get((rule.mode, rule.why), 0) + 1
    lines = []
    for mode in (RAN, FLAGS, LEFT_OUT):
        total = sum(n for (m, _), n in counts.items() if m == mode)
        lines.append(f"{mode}: {total}")
        lines += [f"  {n:3d}  {why}" for (m, why), n in sorted(counts.items()) if m == mode]
    if unmatched:
        lines.append(f"matching no rule: {unmatched}")
    return [f"{len(COMMANDS)} commands in {len(DOCS)} Markdown files", *lines]
