"""Bearer-token auth fails closed: a token source that is configured but holds no token stops
the server from starting, instead of serving everyone."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_serving.http import AuthConfigError, TokenCheck
from turnout_serving.settings import ServingSettings

blank = st.text(alphabet=" \t,", max_size=12)  # separators and whitespace only


@settings(max_examples=100, deadline=None, derandomize=True)
@given(tokens=blank)
def test_tokens_made_of_separators_and_blanks_refuse_to_start(tokens: str) -> None:
    with pytest.raises(AuthConfigError, match="TURNOUT_AUTH_TOKENS holds no token"):
        TokenCheck.from_settings(ServingSettings(auth_tokens=tokens))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(lines=st.lists(st.text(alphabet=" \t\r", max_size=6), max_size=6))
def test_a_token_file_of_blank_lines_refuses_to_start(tmp_path_factory, lines: list[str]) -> None:
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text("\n".join(lines))
    with pytest.raises(AuthConfigError, match=f"the token file {path} holds no token"):
        TokenCheck.from_settings(ServingSettings(auth_token_file=path))


def test_an_unreadable_token_file_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read the token file"):
        TokenCheck.from_settings(ServingSettings(auth_token_file=tmp_path / "missing"))


@pytest.mark.parametrize(
    ("tokens", "enabled"), [(None, False), ("a", True), (" , b ,", True), ("a,,b", True)]
)
def test_one_real_token_turns_auth_on_and_none_configured_leaves_it_off(tokens, enabled) -> None:
    assert TokenCheck.from_settings(ServingSettings(auth_tokens=tokens)).enabled is enabled
