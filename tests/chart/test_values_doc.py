"""docs/helm.md's values table is the one scripts/helm_values_doc.py generates from the chart's
values.yaml now, and the generator reads helm-docs comments the way the chart writes them."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.conftest import ROOT


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "helm_values_doc", ROOT / "scripts" / "helm_values_doc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_table_is_current() -> None:
    doc = generator()
    current = (ROOT / "docs" / "helm.md").read_text()
    table = doc.table((ROOT / "charts" / "turnout" / "values.yaml").read_text())
    assert doc.with_table(current, table) == current, (
        "docs/helm.md is stale: run python scripts/helm_values_doc.py --write"
    )


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
