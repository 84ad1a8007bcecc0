"""How the background senders (mirror.py's shadow copies, payload_log.py's entries) log
failures: the first of a run at warning, the rest at debug until one goes through, then the
recovery at info, so a receiver that stays down fills no log while every failure is still
counted in the sender's own metric."""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass
class FailureRuns:
    log: logging.Logger
    first: str  # the warning, with one %s for the failure
    again: str  # the debug line, with one %s
    recovered: str  # the info line
    failing: bool = False

    def note(self, failure: str | None) -> None:
        if failure is not None and not self.failing:
            self.log.warning(self.first, failure)
        elif failure is not None:
            self.log.debug(self.again, failure)
        elif self.failing:
            self.log.info(self.recovered)
        self.failing = failure is not None
