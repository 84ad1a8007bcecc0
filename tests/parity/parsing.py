"""Deliberate differences in how a scoring payload is read (see `differences.py`)."""

from __future__ import annotations

from tests.parity.differences import Difference

PARSING: list[Difference] = []
