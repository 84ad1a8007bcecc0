"""The one line a server ends with when the model needs a package the image lacks: the package
(not the module) and the requirement the model logged for it."""

from __future__ import annotations

import pytest

from turnout_serving.domain.requirements import missing_package

LOGGED = """mlflow==3.4.0
cloudpickle==3.1.1
numpy==2.1.3
scikit-learn==1.6.1  # sklearn's package
xgboost==2.1.1
Lightgbm == 4.5.0
"""


@pytest.mark.parametrize(
    ("module", "requirements", "reason"),
    [
        ("xgboost", LOGGED, "the model needs package 'xgboost' (xgboost==2.1.1 in its "
         "requirements.txt), which this image does not have"),
        ("xgboost.sklearn", LOGGED, "the model needs package 'xgboost' (xgboost==2.1.1 in its "
         "requirements.txt), which this image does not have"),
        ("lightgbm", LOGGED, "the model needs package 'lightgbm' (Lightgbm==4.5.0 in its "
         "requirements.txt), which this image does not have"),
        ("sklearn.ensemble", LOGGED, "the model needs package 'scikit-learn' (scikit-learn==1.6.1 "
         "in its requirements.txt), which this image does not have"),
        ("catboost", LOGGED, "the model needs package 'catboost' (not in its requirements.txt), "
         "which this image does not have"),
        ("catboost", None, "the model needs package 'catboost' (the model logged no "
         "requirements.txt), which this image does not have"),
        ("xgboost", "-r other.txt\n--index-url https://x\nxgboost>=2; python_version>'3'\n",
         "the model needs package 'xgboost' (xgboost>=2; python_version > \"3\" in its "
         "requirements.txt), which this image does not have"),
    ],
)  # fmt: skip
def test_the_reason_names_the_package_and_its_logged_requirement(
    module: str, requirements: str | None, reason: str
) -> None:
    assert missing_package(module, requirements) == reason
