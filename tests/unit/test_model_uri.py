"""Every registered model name MLflow accepts either reaches the serving pods intact in the
`models:/NAME/VERSION` URI the operator writes, or is refused by the spec with the reason.

MLflow's own code is the reference: `_validate_model_name` says which names are legal, and the
pods download with `mlflow.artifacts.download_artifacts`, which splits the URI with
`ModelsArtifactRepository.split_models_uri` and reads it with `_parse_model_uri` — the same
parser turnout-serve resolves the URI with (`model_source._resolve_models_uri`).
"""

from __future__ import annotations

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
from mlflow.store.artifact.utils.models import _parse_model_uri
from mlflow.utils.validation import _validate_model_name
from pydantic import ValidationError

from turnout_operator.domain.spec import ModelRef

NAMES = st.text(st.sampled_from("ab1 .-_@?#%:/&=+~é\t\n"), min_size=1, max_size=12)


def legal_in_mlflow(name: str) -> bool:
    try:
        _validate_model_name(name)
    except MlflowException:
        return False
    return True


def downloaded_as(uri: str) -> tuple[str | None, str | None]:
    """The registered model and version MLflow's download of `uri` looks for."""
    root, artifact_path = ModelsArtifactRepository.split_models_uri(uri)
    parsed = _parse_model_uri(root)
    return (parsed.name, parsed.version) if artifact_path == "" else (None, None)


def refusal(name: str) -> str | None:
    try:
        ModelRef.model_validate({"name": name, "version": "7"})
    except ValidationError as exc:
        [error] = exc.errors()
        assert error["loc"] == ("name",)
        return str(error["msg"])
    return None


@settings(max_examples=500, deadline=None)
@given(NAMES)
@example("churn@team")
@example("a?b")
@example("churn team #2")
def test_legal_names_are_served_intact_or_refused_with_the_reason(name: str) -> None:
    assume(legal_in_mlflow(name))
    uri = f"models:/{name}/7"
    try:
        intact = downloaded_as(uri) == (name, "7")
    except MlflowException:
        intact = False
    why = refusal(name)
    if why is None:  # accepted: the pods find the very model the spec names
        assert intact
    else:  # refused, saying why: MLflow would not read it back, or it holds '@' (refused as a
        # class: a '#' before the '@' hides it from MLflow's split, which is luck, not a rule)
        assert why.startswith(f"Value error, {name!r} cannot be served: it holds ")
        assert not intact or "@" in name, why
