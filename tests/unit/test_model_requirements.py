"""scripts/model_requirements.py: a model's requirements.txt as the serving image's
MODEL_REQUIREMENTS build argument (the fetch itself is tested against a real MLflow server in
tests/integration/test_flavors.py)."""

from __future__ import annotations

import pytest

from tests.conftest import load_script

requirements = load_script("model_requirements")


def test_the_flavors_pins_stay_and_mlflow_is_the_images_own() -> None:
    logged = ("mlflow==3.4.0\ncloudpickle==3.1.1\nnumpy==2.1.3\n\n# a comment\n"
              "xgboost==2.1.1\nMLflow-Skinny==3.4.0\n")  # fmt: skip
    assert requirements.image_requirements(logged) == (
        ["cloudpickle==3.1.1", "numpy==2.1.3", "xgboost==2.1.1"],
        ["mlflow==3.4.0 (turnout-serve brings its own MLflow)",
         "MLflow-Skinny==3.4.0 (turnout-serve brings its own MLflow)"],
    )  # fmt: skip


def test_markers_are_evaluated_for_the_images_platform() -> None:
    logged = ('pywin32==306; sys_platform == "win32"\n'
              'tomli==2.0.1; python_version < "3.11"\n'
              'lightgbm[scikit-learn] == 4.5.0 ; platform_machine == "x86_64"\n')  # fmt: skip
    assert requirements.image_requirements(logged) == (
        ["lightgbm[scikit-learn]==4.5.0"],
        ['pywin32==306; sys_platform == "win32" (not for the image\'s platform)',
         'tomli==2.0.1; python_version < "3.11" (not for the image\'s platform)'],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("mypkg @ https://example.com/mypkg-1.0.whl", "a URL requirement"),
        ("-r more.txt", "Expected package name"),
        ("--index-url https://example.com/simple", "Expected package name"),
    ],
)
def test_what_a_build_argument_cannot_carry_is_refused_with_its_line(line: str, why: str) -> None:
    with pytest.raises(requirements.UnusableRequirement) as refused:
        requirements.image_requirements(f"numpy==2.1.3\n{line}\n")
    assert str(refused.value).startswith(f"requirements.txt line 2: {line!r}: ")
    assert why in str(refused.value)
