"""Which model exceptions are the input's fault (400) and which are the model's (500)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from turnout_serving.predictor import _raised_by_input_validation


def _raised(fn) -> Exception:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception) as info:
        fn()
    return info.value


@pytest.fixture(scope="module")
def ridge() -> Ridge:
    return Ridge().fit(np.arange(12.0).reshape(4, 3), np.arange(4.0))


def test_wrong_width_and_strings_are_input_errors(ridge: Ridge) -> None:
    assert _raised_by_input_validation(_raised(lambda: ridge.predict(np.ones((1, 2)))))
    strings = np.array([["a", "b", "c"]], dtype=object)
    assert _raised_by_input_validation(_raised(lambda: ridge.predict(strings)))


def test_errors_raised_by_model_code_are_not() -> None:
    def model_code() -> None:
        raise ValueError("age out of range")

    assert not _raised_by_input_validation(_raised(model_code))
    assert not _raised_by_input_validation(_raised(lambda: 1 / 0))
