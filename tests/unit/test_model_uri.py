"""Every registered model name MLflow accepts either reaches the serving pods intact in the
`models:/NAME/VERSION` URI the operator writes, or is refused by the spec, naming the field.

MLflow's own functions are the reference: `_validate_model_name` says which names are legal, and
`_parse_model_uri` how MLflow (and so turnout-serve's download) reads the URI back. turnout-serve
reads the name with its own pattern first: it must agree with MLflow on every name the spec
accepts, for version and alias URIs alike.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.utils.models import _parse_model_uri
from mlflow.utils.validation import _validate_model_name
from pydantic import ValidationError

from turnout_operator.domain.spec import ModelRef
from turnout_serving.model_source import _MODELS_URI

NAMES = st.text(st.sampled_from("ab1 .-_@?#%:/&=+~é\t\n"), min_size=1, max_size=12)


def legal_in_mlflow(name: str) -> bool:
    try:
        _validate_model_name(name)
    except MlflowException:
        return False
    return True


def accepted_by_spec(name: str) -> bool:
    try:
        ModelRef.model_validate({"name": name, "version": "7"})
    except ValidationError as exc:
        assert [e["loc"] for e in exc.errors()] == [("name",)]
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(NAMES)
@example("churn@team")
@example("a@1")
@example("a?b")
def test_legal_names_are_deployed_intact_or_refused_up_front(name: str) -> None:
    assume(legal_in_mlflow(name))
    uri = f"models:/{name}/7"
    try:
        parsed = _parse_model_uri(uri)
        intact = (parsed.name, parsed.version) == (name, "7")
    except MlflowException:
        intact = False
    assert accepted_by_spec(name) == intact
    if intact:
        served = _MODELS_URI.match(uri)
        assert served is not None and (served["name"], served["ref"], served["alias"]) == (
            name, "7", None,
        )  # fmt: skip
        alias = _parse_model_uri(f"models:/{name}@champion")
        by_alias = _MODELS_URI.match(f"models:/{name}@champion")
        assert by_alias is not None
        assert (by_alias["name"], by_alias["alias"]) == (alias.name, alias.alias)


@pytest.mark.parametrize("name", ["churn@team", "a@b@c", "team@1"])
def test_names_with_an_at_sign_are_served_as_mlflow_reads_them(name: str) -> None:
    served = _MODELS_URI.match(f"models:/{name}/3")
    assert served is not None and (served["name"], served["ref"]) == (name, "3")
