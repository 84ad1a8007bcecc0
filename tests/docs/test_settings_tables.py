"""The settings tables (`| flag | env | default | meaning |`) of README.md (turnout-serve) and
docs/operations.md (turnout-operator) say what the programs do: every flag is one of the
program's parser, every variable a field of its settings, and every default that is a plain
value (a number, a word, a path or URL, on/off) is the field's default or the flag's."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from tests.conftest import ROOT
from tests.docs.parse_only import argparse_options


@dataclass(frozen=True)
class Program:
    doc: Path
    settings: type[BaseSettings]
    parser: argparse.ArgumentParser
    prefix: str


def programs() -> list[Program]:
    from turnout_operator import cli as operator_cli
    from turnout_operator.settings import OperatorSettings
    from turnout_serving import cli as serving_cli
    from turnout_serving.settings import ServingSettings

    run = next(a for a in operator_cli.parser()._actions
               if isinstance(a, argparse._SubParsersAction)).choices["run"]  # fmt: skip
    return [
        Program(ROOT / "README.md", ServingSettings, serving_cli.parser(), "TURNOUT_"),
        Program(ROOT / "docs" / "operations.md", OperatorSettings, run, "TURNOUT_OPERATOR_"),
    ]


def rows(doc: Path) -> list[tuple[int, dict[str, str]]]:
    """The rows of every table whose header has the columns flag, env and default."""
    found: list[tuple[int, dict[str, str]]] = []
    header: list[str] | None = None
    for number, line in enumerate(doc.read_text().splitlines(), start=1):
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(cells) <= {"---", ":---", "---:", ":---:"} and {
            "flag", "env", "default"} <= set(header):  # fmt: skip
            found.append((number, dict(zip(header, cells, strict=False))))
    return found


def words(cell: str) -> list[str]:
    """A cell's values: `a` / `b` is two; backticks, notes in parentheses and fallbacks read after
    the setting (`, then `MLFLOW_PORT``) dropped."""
    cell = re.sub(r"\([^)]*\)", "", cell)
    cell = re.sub(r",\s*then\s+`[^`]*`", "", cell)
    return [part.strip().strip("`").strip() for part in cell.split(" / ")]


def plain(text: str, default: Any) -> Any:
    """`text` read as a value of `default`'s type; None when it is prose or no value."""
    if text in ("", "—", "-") or default is None:
        return None
    if isinstance(default, bool):
        return {"on": True, "true": True, "off": False, "false": False}.get(text)
    if isinstance(default, int | float):
        try:
            return type(default)(float(text.replace(",", "")))
        except ValueError:
            return None
    if isinstance(default, str | Path) and " " not in text:
        return type(default)(text)
    return None


def wrong_rows(program: Program, doc: Path) -> list[str]:
    """What the settings rows of `doc` say that `program` does not do."""
    options = argparse_options(program.parser, [])
    defaults = {o: a.default for a in program.parser._actions for o in a.option_strings}
    fields = program.settings.model_fields
    wrong = []
    for number, row in rows(doc):
        where = f"{doc.name}:{number}"
        spans = " ".join(re.findall(r"`([^`]*)`", row["flag"]))
        flags = re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", spans)
        wrong += [f"{where}: no flag {f}" for f in flags if f not in options]
        variables = [w.split("=")[0] for w in words(row["env"])]
        said = words(row["default"])
        for i, variable in enumerate(variables):
            if not variable.startswith(program.prefix):
                continue
            name = variable.removeprefix(program.prefix).lower()
            if name not in fields:
                wrong.append(f"{where}: no setting {variable}")
                continue
            default = fields[name].get_default(call_default_factory=True)
            text = said[i] if len(said) == len(variables) else None
            value = plain(text, default) if text is not None else None
            if value is not None and value != default:
                wrong.append(f"{where}: {variable} defaults to {default}, the table says {text}")
        if not any(v.startswith(program.prefix) for v in variables) and flags:
            default = defaults.get(flags[-1])
            value = plain(said[0], default)
            if value is not None and value != default:
                wrong.append(
                    f"{where}: {flags[-1]} defaults to {default}, the table says {said[0]}"
                )
    return wrong


@pytest.mark.parametrize("program", programs(), ids=lambda p: p.doc.name)
def test_settings_table_says_what_the_program_does(program: Program) -> None:
    assert len(rows(program.doc)) >= 5, f"{program.doc.name}: no settings table"
    wrong = wrong_rows(program, program.doc)
    assert not wrong, "\n".join(wrong)


def test_a_wrong_row_is_named(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(
        "| flag | env | default | meaning |\n"
        "|---|---|---|---|\n"
        "| `-p, --port` / `-h, --host` | `TURNOUT_PORT` / `TURNOUT_HOST` | 5000 / 0.0.0.0 | |\n"
        "| `--colour` | `TURNOUT_COLOUR` | none | |\n"
        "| `--max-body-bytes` | `TURNOUT_MAX_BODY_BYTES` | 10485760 | |\n"
        "| `--no-drift` | `TURNOUT_DRIFT_ENABLED=false` | off | |\n"
        "| — | `TURNOUT_FEEDBACK_TTL_SECONDS` | an hour | prose is not checked |\n"
    )
    assert wrong_rows(programs()[0], doc) == [
        "guide.md:3: TURNOUT_HOST defaults to 127.0.0.1, the table says 0.0.0.0",
        "guide.md:4: no flag --colour",
        "guide.md:4: no setting TURNOUT_COLOUR",
        "guide.md:6: TURNOUT_DRIFT_ENABLED defaults to True, the table says off",
    ]
