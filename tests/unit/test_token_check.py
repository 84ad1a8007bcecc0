"""Bearer-token auth of inference (`http.TokenCheck`): a valid token passes in
`Authorization: Bearer` or in `X-Turnout-Token` (the header that survives the Kubernetes API
server's service proxy), anything else is a 401 that names both."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from turnout_operator.domain.manifests import TOKEN_HEADER as OPERATOR_HEADER
from turnout_operator.domain.manifests import TOKENS_KEY, first_token
from turnout_serving.errors import Unauthorized
from turnout_serving.http import TOKEN_HEADER, TokenCheck
from turnout_serving.settings import ServingSettings

TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)


def request(headers: dict[str, str]) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/invocations", "headers": raw})


def passes(check: TokenCheck, headers: dict[str, str]) -> bool:
    try:
        check.check(request(headers))
    except Unauthorized:
        return False
    return True


@given(
    tokens=st.lists(TOKEN, min_size=1, max_size=3),
    bearer=st.none() | TOKEN,
    scheme=st.sampled_from(["Bearer", "bearer", "Basic", "Token"]),
    custom=st.none() | TOKEN,
)
def test_a_request_passes_exactly_when_one_header_holds_a_configured_token(
    tokens: list[str], bearer: str | None, scheme: str, custom: str | None
) -> None:
    headers = {}
    if bearer is not None:
        headers["Authorization"] = f"{scheme} {bearer}"
    if custom is not None:
        headers[TOKEN_HEADER] = custom
    expected = (bearer in tokens and scheme.lower() == "bearer") or custom in tokens
    assert passes(TokenCheck(tokens), headers) is expected


@pytest.mark.parametrize(
    "headers",
    [
        {TOKEN_HEADER: "s3cret"},
        {"Authorization": "Bearer s3cret"},
        {"Authorization": "Basic dXNlcjpwYXNz", TOKEN_HEADER: "s3cret"},  # a gateway's own scheme
        {"Authorization": "Bearer wrong", TOKEN_HEADER: "s3cret"},
    ],
)
def test_either_header_carries_the_token(headers: dict[str, str]) -> None:
    assert passes(TokenCheck(["other", "s3cret"]), headers)


@pytest.mark.parametrize(
    "headers",
    [{}, {TOKEN_HEADER: ""}, {TOKEN_HEADER: "Bearer s3cret"}, {"Authorization": "s3cret"},
     {"Authorization": "Bearer "}, {"X-Api-Key": "s3cret"}],
)  # fmt: skip
def test_a_missing_or_wrong_token_is_refused_naming_both_headers(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized) as refused:
        TokenCheck(["s3cret"]).check(request(headers))
    assert refused.value.status_code == 401
    assert refused.value.message == (
        "A valid bearer token is required (Authorization: Bearer <token>, or "
        "X-Turnout-Token: <token>)."
    )


def test_without_tokens_every_request_passes() -> None:
    assert passes(TokenCheck([]), {})
    assert passes(TokenCheck([""]), {TOKEN_HEADER: ""})


# --- the operator's side: which token its smoke test sends, in which header ---------------------


@given(
    lines=st.lists(
        st.tuples(st.sampled_from(["", " ", "\t"]), st.none() | TOKEN, st.sampled_from(["", "  "])),
        min_size=1, max_size=5,
    ),
    newline=st.sampled_from(["\n", "\r\n"]),
)  # fmt: skip
def test_the_token_the_smoke_test_sends_is_one_the_server_accepts(
    lines: list[tuple[str, str | None, str]], newline: str
) -> None:
    """The operator picks a token from the Secret's `tokens` key, the server reads the same
    text as its token file: the server must accept what the operator sends."""
    text = newline.join(f"{pad}{token or ''}{tail}" for pad, token, tail in lines)
    chosen = first_token(text)
    written = [token for _, token, _ in lines if token]
    if not written:
        assert chosen is None
        return
    assert chosen == written[0]
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / TOKENS_KEY
        path.write_text(text)
        server = TokenCheck.from_settings(ServingSettings(auth_token_file=path))
    assert passes(server, {OPERATOR_HEADER: chosen})


def test_the_operator_sends_the_token_in_the_header_the_server_reads() -> None:
    assert OPERATOR_HEADER == TOKEN_HEADER == "X-Turnout-Token"
