"""Deliberate differences in responses, endpoints and the command line (see `differences.py`)."""

from __future__ import annotations

from tests.parity.differences import Difference

PROTOCOL: list[Difference] = []
