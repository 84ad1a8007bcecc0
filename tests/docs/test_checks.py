"""The docs' command checks themselves: the Markdown is read as a reader reads it (file and line
of each command, as the shell splits it), and a wrong command fails with the file, the line and
what is wrong. Without these, test_commands.py passing could mean it checks nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docs.markdown import Command, blocks, commands_of_block, inline_commands
from tests.docs.rules import PROGRAMS, classify, missing_paths

DOC = """\
# A guide

Run `make demo`, then `kubectl get mdep -w` (`spec.model` is no command).
See `bench/serving.py`, or `.venv/bin/python bench/serving.py [--quick] [--json out.json]`.

```bash
make test    # the tests
helm install turnout charts/turnout \\
  --set 'watchNamespaces={a,b}' --set x=1   # two namespaces
FOO=1 curl -s 127.0.0.1:8080/ping | jq . && echo "done; # not a comment" > /dev/null
```

```console
$ kubectl get mdep
NAME   MODEL
$ turnout-serve -m 'models:/M/1' \\
>   --color blue
```

```yaml
command: [make, test]
```

| step | command |
|---|---|
| one | `helm template turnout charts/turnout`, `curl -sS https://x.dev/#anchor` |
"""


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "guide.md"
    path.write_text(DOC)
    return path


def test_commands_of_blocks_with_their_lines(doc: Path) -> None:
    found = [(c.line, c.argv) for b in blocks(doc) for c in commands_of_block(b)]
    assert found == [
        (7, ("make", "test")),
        (8, ("helm", "install", "turnout", "charts/turnout", "--set", "watchNamespaces={a,b}",
             "--set", "x=1")),
        (10, ("curl", "-s", "127.0.0.1:8080/ping")),
        (10, ("jq", ".")),
        (10, ("echo", "done; # not a comment")),
        (14, ("kubectl", "get", "mdep")),
        (16, ("turnout-serve", "-m", "models:/M/1", "--color", "blue")),
    ]  # fmt: skip
    assert [b.lang for b in blocks(doc)] == ["bash", "console", "yaml"]


def test_inline_commands_with_their_lines(doc: Path) -> None:
    found = [(c.line, c.argv, c.synopsis) for c in inline_commands(doc, PROGRAMS)]
    assert found == [
        (3, ("make", "demo"), False),
        (3, ("kubectl", "get", "mdep", "-w"), False),
        (4, (".venv/bin/python", "bench/serving.py", "--quick", "--json", "out.json"), True),
        (26, ("helm", "template", "turnout", "charts/turnout"), False),
        (26, ("curl", "-sS", "https://x.dev/#anchor"), False),
    ]  # fmt: skip


def command(text: str, synopsis: bool = False) -> Command:
    return Command(ROOT / "docs" / "guide.md", 7, tuple(text.split()), synopsis)


def failure(text: str, synopsis: bool = False) -> str:
    wrong = command(text, synopsis)
    rule = classify(wrong)
    assert rule is not None
    with pytest.raises(AssertionError) as failed:
        rule.check(wrong)
    return str(failed.value).splitlines()[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("turnout-serve -m models:/M/1 --drift-window 5",
         "docs/guide.md:7: `turnout-serve` has no --drift-window (in `turnout-serve -m models:/M/1 --drift-window 5`)"),
        ("turnout-serve -p eighty",
         "docs/guide.md:7: `turnout-serve -p eighty`: usage: turnout-serve [--help] [-m MODEL_URI] [-p PORT] [-h HOST] [-t TIMEOUT]"),
        ("turnout-operator run --namespaces ml",
         "docs/guide.md:7: `turnout-operator` has no --namespaces (in `turnout-operator run --namespaces ml`)"),
        ("python scripts/demo_models.py --tracking http://x diabetes",
         "docs/guide.md:7: `scripts/demo_models.py` has no --tracking (in `python scripts/demo_models.py --tracking http://x diabetes`)"),
        ("python scripts/quickstart_models.py register-iris",
         "docs/guide.md:7: `python scripts/quickstart_models.py register-iris`: usage: quickstart_models.py register-iris [-h] --tracking-uri TRACKING_URI"),
        ("kubectl annotate mdep x turnout.dev/promote=now --overwite",
         "docs/guide.md:7: `kubectl annotate` has no --overwite (in `kubectl annotate mdep x turnout.dev/promote=now --overwite`)"),
        ("helm upgrade turnout charts/turnout --reuse-value",
         "docs/guide.md:7: `helm upgrade` has no --reuse-value (in `helm upgrade turnout charts/turnout --reuse-value`)"),
        ("mlflow models serve -m models:/M/1 --env local",
         "docs/guide.md:7: `mlflow models serve` has no --env (in `mlflow models serve -m models:/M/1 --env local`)"),
        ("curl -s --data-jsn {} 127.0.0.1",
         "docs/guide.md:7: `curl` has no --data-jsn (in `curl -s --data-jsn {} 127.0.0.1`)"),
        ("make no-such-target",
         "docs/guide.md:7: `make no-such-target` (as `make -n`) failed:"),
        ("bash scripts/quickstart.sh start",
         "docs/guide.md:7: quickstart.sh has no command 'start'"),
    ],
)  # fmt: skip
def test_a_wrong_command_fails_naming_file_line_and_what(text: str, message: str) -> None:
    assert failure(text) == message


def test_values_the_chart_refuses_fail() -> None:
    message = failure("helm install turnout charts/turnout --set operator.logLevl=debug")
    assert message == (
        "docs/guide.md:7: `helm install turnout charts/turnout --set operator.logLevl=debug` "
        "(as `helm template`) failed:"
    )


def test_a_synopsis_is_checked_for_flag_names_only() -> None:
    right = command("python bench/operator.py --objects N --quick", synopsis=True)
    rule = classify(right)
    assert rule is not None
    rule.check(right)  # N is no int, but a synopsis names placeholders
    assert failure("python bench/operator.py --object N", synopsis=True) == (
        "docs/guide.md:7: `bench/operator.py` has no --object (in `python bench/operator.py --object N`)"
    )


def test_paths_that_moved_and_commands_without_a_rule() -> None:
    assert missing_paths(command("kubectl apply -k manifests/overlay/namespaced")) == [
        "manifests/overlay/namespaced"
    ]
    assert missing_paths(command("kind create cluster --config=examples/kind.yaml")) == [
        "examples/kind.yaml"
    ]
    assert missing_paths(command("kubectl apply -f crds/ -n svc/mlflow")) == []
    assert classify(command("jq . file.json")) is None
