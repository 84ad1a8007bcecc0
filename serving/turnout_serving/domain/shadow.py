"""Shadow traffic's decisions: what an operator may ask for, how long mirroring lasts, which live
answers are copied, and the copy's wire form.

While a preview color is up, the active color's servers copy a share of their live requests to
it (`mirror.py` does the I/O); the preview scores each copy and compares (`shadow.py`). What is
decided here is pure: a `Lease` turns the operator's `ShadowConfig` into a yes or no per live
answer from a clock reading and a random draw handed in, so tests drive time and chance
themselves. Nothing here does I/O, reads a clock or draws a random number.

- A lease ends by itself `ttlSeconds` after the last PUT: an operator that dies mid-rollout
  leaves no mirroring behind for long.
- A share (`percent`) of live answers is drawn; the drawn ones then pass a token bucket of
  `maxRequestsPerSecond` (one second's worth of burst), so a traffic spike cannot flood the
  preview. The bucket is spent only on drawn answers.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
)

from turnout_serving.domain.ratelimit import TokenBucket
from turnout_serving.errors import BadRequest

MAX_TTL_SECONDS = 24 * 3600.0
MAX_BATCH_COPIES = 64  # copies in one POST /shadow


class ShadowConfig(BaseModel):
    """The body of `PUT /admin/shadow`: where to mirror, how much, and for how long."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    target: str = Field(
        description="Base URL of the preview (http or https, no query, fragment or user info); "
        "copies go to <target>/shadow."
    )
    percent: float = Field(ge=0, le=100, allow_inf_nan=False, description="Share of live "
                           "answers copied, 0-100.")  # fmt: skip
    max_requests_per_second: float = Field(
        gt=0, allow_inf_nan=False, alias="maxRequestsPerSecond",
        description="Most copies sent per second (a token bucket; bursts of one second's worth).",
    )  # fmt: skip
    ttl_seconds: float = Field(
        gt=0, le=MAX_TTL_SECONDS, allow_inf_nan=False, alias="ttlSeconds",
        description="Mirroring stops by itself this long after the last PUT.",
    )  # fmt: skip
    token: SecretStr | None = Field(
        None, description="Inference token the target requires (sent as a bearer token)."
    )

    @field_validator("target", mode="before")
    @classmethod
    def _base_url(cls, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a URL string")
        url = AnyHttpUrl(value)  # http(s) with a host, or a ValueError saying what is wrong
        if url.username or url.password or url.query or url.fragment:
            raise ValueError("must be a base URL: no user info, query or fragment")
        return str(url).rstrip("/")


def read_config(body: bytes) -> ShadowConfig:
    """The admin PUT body; a 400 naming each field that is wrong."""
    try:
        return ShadowConfig.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(f"Invalid shadow configuration: {fields_wrong(exc)}") from None


def fields_wrong(exc: ValidationError) -> str:
    """`percent: Input should be less than or equal to 100; ...`: each field and what is wrong."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors()
    )


class Decision(StrEnum):
    SEND = "send"
    NOT_DRAWN = "not_drawn"  # outside the percent: nothing to count
    DROPPED_RATE = "dropped_rate"  # drawn, but over maxRequestsPerSecond
    EXPIRED = "expired"  # the lease ran out


class Lease:
    """Mirroring as configured by the last PUT, until `expires_at` (clock seconds)."""

    def __init__(self, config: ShadowConfig, now: float) -> None:
        self.config = config
        self.expires_at = now + config.ttl_seconds
        rate = config.max_requests_per_second
        self._bucket = TokenBucket(rate, max(1.0, rate), now)
        self._share = config.percent / 100.0

    def renewed(self, config: ShadowConfig, now: float) -> Lease:
        """This lease after another PUT: the same bucket while the rate stays, a new deadline."""
        lease = Lease(config, now)
        if config.max_requests_per_second == self.config.max_requests_per_second:
            lease._bucket = self._bucket
        return lease

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def decide(self, now: float, draw: float) -> Decision:
        """Whether to copy one live answer; `draw` is uniform in [0, 1)."""
        if now >= self.expires_at:
            return Decision.EXPIRED
        if draw >= self._share:
            return Decision.NOT_DRAWN
        return Decision.SEND if self._bucket.take(now) else Decision.DROPPED_RATE


# --- the copy on the wire (the active's POST /shadow body) ----------------------------------


def _b64decode(value: object) -> bytes:
    if isinstance(value, bytes):  # built in Python, not read from JSON
        return value
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ValueError(f"is not valid base64: {exc}") from None


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(lambda raw: base64.b64encode(raw).decode("ascii"), return_type=str),
]


class ShadowCopy(BaseModel):
    """A live request the active answered, with its answer, as the preview receives it (in a
    `ShadowBatch`).

    Fields a newer server adds are ignored by an older one, so both colors may run different
    turnout versions during a rollout.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    protocol: Literal["mlflow", "open_inference"]
    content_type: str | None = Field(None, alias="contentType")
    path: str = Field(description="The path the client sent the request to, on the active.")
    request_id: str = Field(alias="requestId", min_length=1, max_length=128)
    body: Base64Bytes
    active_answer: Base64Bytes = Field(alias="activeAnswer")
    active_latency_seconds: float = Field(ge=0, allow_inf_nan=False,
                                          alias="activeLatencySeconds")  # fmt: skip


class ShadowBatch(BaseModel):
    """The body of `POST /shadow`: copies sent together (those that arrived together)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    copies: list[ShadowCopy] = Field(min_length=1, max_length=MAX_BATCH_COPIES)


def encode_batch(copies: list[ShadowCopy]) -> bytes:
    return ShadowBatch(copies=copies).model_dump_json(by_alias=True).encode()


def decode_batch(body: bytes) -> list[ShadowCopy]:
    """The POST /shadow body; a 400 naming each field that is wrong (`copies.2.requestId`)."""
    try:
        return ShadowBatch.model_validate_json(body).copies
    except ValidationError as exc:
        raise BadRequest(f"Invalid shadow copies: {fields_wrong(exc)}") from None
