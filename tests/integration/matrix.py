"""The rows of the pairwise feature matrix (tests/integration/test_matrix.py): every pair of levels
of the features below meets in at least one full rollout.

The rows are derived, never written by hand: a covering array of strength 2 from `allpairspy`
(pairwise testing: most interaction failures involve at most two features, and covering every
pair takes 10 rows where covering every combination would take 3,072). tests/unit/test_matrix.py
checks, independently of the generator, that every pair is covered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allpairspy import AllPairs

# feature -> its levels; the first level of each two-level feature is "off"
FACTORS: dict[str, tuple[Any, ...]] = {
    "model": ("version", "alias", "stage"),  # how the ModelDeployment names the model
    "auth": (False, True),  # spec.auth.tokenSecret
    "smoke": (False, True),  # strategy.blueGreen.smokeTest
    "partial_preview": (False, True),  # previewReplicaCount (1) < replicas (2)
    "manual": (False, True),  # autoPromotionEnabled false, then the promote annotation
    "delay": (False, True),  # autoPromotionSeconds > 0
    "credentials": (False, True),  # registry.credentialsSecret
    "overrides": (False, True),  # template env, resources, serviceAccountName
    "drift_off": (False, True),  # monitoring.drift.enabled false
    "paused": (False, True),  # spec.paused before the change to v2, then resumed
    "analysed": (False, True),  # shadow and a pre-promotion analysis before the switch
}
# how a feature that is on shows in a test id
SHORT = {"auth": "auth", "smoke": "smoke", "partial_preview": "preview1of2", "manual": "manual",
         "delay": "delay", "credentials": "creds", "overrides": "template",
         "drift_off": "nodrift", "paused": "paused", "analysed": "analysed"}  # fmt: skip


@dataclass(frozen=True)
class Row:
    index: int
    model: str
    auth: bool
    smoke: bool
    partial_preview: bool
    manual: bool
    delay: bool
    credentials: bool
    overrides: bool
    drift_off: bool
    paused: bool
    analysed: bool

    @property
    def id(self) -> str:
        """e.g. `r3-stage-auth-smoke-paused`: the model reference and the features that are on."""
        on = [SHORT[f] for f in SHORT if getattr(self, f)]
        return "-".join([f"r{self.index}", self.model, *on])

    def level(self, factor: str) -> Any:
        return getattr(self, factor)


def covering_array(factors: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows (factor -> level) in which every pair of levels of two factors appears."""
    names = list(factors)
    return [
        dict(zip(names, levels, strict=True))
        for levels in AllPairs([list(factors[n]) for n in names])
    ]


def rows() -> list[Row]:
    return [Row(index, **levels) for index, levels in enumerate(covering_array(FACTORS), 1)]
