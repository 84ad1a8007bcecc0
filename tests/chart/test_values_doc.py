"""The values tables of docs/helm.md and of the chart's README are the one
scripts/helm_values_doc.py generates from the chart's values.yaml now, the generator reads
helm-docs comments the way the chart writes them, and `helm show readme` prints the README."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT, load_script
from tests.manifests import CHART, Helm


def generator() -> ModuleType:
    return load_script("helm_values_doc")


def test_both_tables_are_generated() -> None:
    assert [p.relative_to(ROOT).as_posix() for p in generator().DOCS] == [
        "docs/helm.md",
        "charts/turnout/README.md",
    ]


@pytest.mark.parametrize("path", generator().DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_table_is_current(path: Path) -> None:
    doc = generator()
    current = path.read_text()
    table = doc.table((CHART / "values.yaml").read_text())
    assert doc.BEGIN in current and table in current
    assert doc.with_table(current, table) == current, (
        f"{path.relative_to(ROOT)} is stale: run python scripts/helm_values_doc.py --write"
    )


def test_helm_show_readme_prints_the_charts_readme(helm: Helm) -> None:
    done = helm.run("show", "readme", CHART)
    assert done.returncode == 0, done.stderr
    readme = (CHART / "README.md").read_text()
    assert done.stdout.strip() == readme.strip()
    assert "| `watchNamespaces` | list | `[]` |" in done.stdout


def test_table_from_helm_docs_comments() -> None:
    values = """\
# A file comment, not a description.
# -- Namespaces to watch.
# Empty: all of them.
watchNamespaces: []
image:
  # -- Image repository.
  repository: ghcr.io/x/y
  # -- A tag | or a digest.
  tag: "0.1"

  # -- Resources (documented as a whole).
  resources:
    limits:
      memory: 1Gi
# -- Port.
port: 8000
"""
    assert generator().table(values) == (
        "| Key | Type | Default | Description |\n"
        "|---|---|---|---|\n"
        "| `watchNamespaces` | list | `[]` | Namespaces to watch. Empty: all of them. |\n"
        '| `image.repository` | string | `"ghcr.io/x/y"` | Image repository. |\n'
        '| `image.tag` | string | `"0.1"` | A tag \\| or a digest. |\n'
        '| `image.resources` | object | `{"limits":{"memory":"1Gi"}}` | Resources (documented as a whole). |\n'
        "| `port` | int | `8000` | Port. |\n"
    )


def test_every_value_needs_a_description() -> None:
    values = "image:\n  # -- Documented.\n  repository: x\n  tag: latest\n# comment\nport: 1\n"
    with pytest.raises(SystemExit) as refused:
        generator().table(values)
    assert str(refused.value) == "values without a `# --` description: image.tag, port"
