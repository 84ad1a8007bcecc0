"""The artifact cache of turnout-serve (`model_source.fetch`): a download without a model is an
error that says why, and what an earlier process left incomplete is replaced, not a dead end.

A pod's emptyDir cache outlives its container's restarts, so whatever a crashed start left in it
is there for the next one."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout_serving.model_source import ModelSourceError, ResolvedSource, fetch


def source(artifacts: Path) -> ResolvedSource:
    return ResolvedSource(uri="models:/M/1", download_uri=str(artifacts),
                          cache_key="registry/M/1", name="M", version="1")  # fmt: skip


def model_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "model.pkl").write_bytes(b"weights")
    return root


def test_artifacts_without_a_model_are_refused_with_the_reason(tmp_path: Path) -> None:
    empty = tmp_path / "store" / "artifacts"
    empty.mkdir(parents=True)
    with pytest.raises(
        ModelSourceError, match=r"No model at .*artifacts: its artifacts hold no MLmodel"
    ):
        fetch(source(empty), tmp_path / "cache")
    assert not (tmp_path / "cache" / "registry" / "M" / "1").exists()  # nothing cached


def test_an_incomplete_cache_entry_is_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    leftover = cache / "registry" / "M" / "1"
    leftover.mkdir(parents=True)
    (leftover / ".turnout").mkdir()
    (leftover / ".turnout" / "reference.json").write_text("{}")  # no MLmodel: incomplete
    path, seconds = fetch(source(model_dir(tmp_path / "store" / "model")), cache)
    assert path == leftover
    assert (path / "MLmodel").is_file() and (path / "model.pkl").read_bytes() == b"weights"
    assert not (path / ".turnout").exists()
    assert seconds > 0


def test_a_complete_cache_entry_is_used_as_it_is(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _ = fetch(source(model_dir(tmp_path / "store" / "model")), cache)
    (tmp_path / "store" / "model" / "model.pkl").write_bytes(b"changed in the store")
    again, seconds = fetch(source(tmp_path / "store" / "model"), cache)
    assert (again, seconds) == (first, 0.0)
    assert (again / "model.pkl").read_bytes() == b"weights"  # a version is immutable
