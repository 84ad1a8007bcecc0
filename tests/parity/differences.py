"""Where `turnout-serve` answers differently from `mlflow models serve`, on purpose.

Each `Difference` is one documented, tested departure from the reference: the tests that own it
run both sides and check that they differ exactly as stated, and `scripts/parity_table.py`
renders all of them into README.md ("Where turnout differs on purpose"), so the table can only
list differences that really exist. Payload-parsing differences live in `parsing.py`,
protocol-level ones (responses, command line, endpoints) in `protocol.py`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    key: str  # stable id, used by the tests that check this difference
    topic: str  # what kind of input, in a few words
    example: str  # one concrete input, as a user would send it
    mlflow: str  # what `mlflow models serve` does with it
    turnout: str  # what `turnout-serve` does instead
    why: str  # the reason it is worth differing


def all_differences() -> list[Difference]:
    from tests.parity.parsing import PARSING
    from tests.parity.protocol import PROTOCOL

    return [*PARSING, *PROTOCOL]
