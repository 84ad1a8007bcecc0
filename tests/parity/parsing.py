"""Deliberate differences in how a scoring payload is read (see `differences.py`).

Each is checked by tests/unit/test_parse_parity_differences.py, which sends `example` to MLflow's
scoring function and to turnout's predictor (fast and general path) and asserts both answers;
tests/unit/test_parse_parity.py holds the generated search that finds no other difference.
"""

from __future__ import annotations

from tests.parity.differences import Difference

_CHANGED = "The model would predict on a value the client never sent, and nobody would know."

PARSING: list[Difference] = [
    Difference(
        key="fraction-into-integer",
        topic="A fractional number in an integer (`long`, `integer`) column",
        example='`{"dataframe_split": {"columns": ["season"], "data": [[3.5]]}}`, `season` long',
        mlflow="200: the model gets `season` = 3 (truncated)",
        turnout="400 naming column `season` and row 0",
        why=_CHANGED + " Integral floats (3.0) are accepted, as MLflow accepts them.",
    ),
    Difference(
        key="string-into-integer",
        topic="A number written as a string in an integer column",
        example='`{"dataframe_records": [{"season": "3"}]}`, `season` long',
        mlflow="200: the model gets `season` = 3",
        turnout="400 naming column `season` and row 0",
        why="The signature says number; a client sending strings has a bug worth seeing. "
        '(In a `double` column MLflow\'s reading of `"1.5"` as 1.5 is kept.)',
    ),
    Difference(
        key="boolean-into-number",
        topic="A boolean in a number column",
        example='`{"inputs": {"temp": [true]}}`, `temp` double',
        mlflow="200: the model gets `temp` = 1.0",
        turnout="400 naming column `temp` and row 0",
        why=_CHANGED,
    ),
    Difference(
        key="integer-out-of-range",
        topic="An integer beyond its column's range",
        example='`{"dataframe_split": {"columns": ["count"], "data": [[9223372036854775808]]}}`, '
        "`count` long",
        mlflow="200: the model gets `count` = -9223372036854775808 (wrapped around)",
        turnout="400 naming column `count` and row 0",
        why=_CHANGED + " The same holds for 1e20 in a `long` column and 2147483648 in an "
        "`integer` one.",
    ),
    Difference(
        key="big-integer-beside-floats",
        topic="An integer past 2**53 in an integer column that also holds floats",
        example='`{"dataframe_records": [{"id": 9007199254740993}, {"id": 3.0}]}`, `id` long',
        mlflow="200: the model gets `id` = 9007199254740992 (pandas stores the column as float64)",
        turnout="400 naming column `id` and row 0",
        why=_CHANGED,
    ),
    Difference(
        key="float32-overflow",
        topic="A number beyond the 32-bit range in a `float` column",
        example='`{"dataframe_records": [{"x": 1e39}]}`, `x` float',
        mlflow="200: the model gets `x` = inf",
        turnout="400 naming column `x` and row 0",
        why=_CHANGED + ' The same holds for `"1e400"` in a `double` column.',
    ),
    Difference(
        key="not-a-boolean",
        topic="Anything but true, false, 0 or 1 in a `boolean` column",
        example='`{"dataframe_records": [{"member": "false"}]}`, `member` boolean',
        mlflow="200: the model gets `member` = True (any non-empty string is True; null becomes "
        "True or False depending on the format)",
        turnout="400 naming column `member` and row 0",
        why=_CHANGED,
    ),
    Difference(
        key="not-a-string",
        topic="A number or a boolean in a `string` column",
        example='`{"dataframe_records": [{"sex": 3}]}`, `sex` string',
        mlflow="200: the model gets the number 3 (dataframe formats) or the text `3` "
        "(`inputs`, `instances`; `true` becomes `True`)",
        turnout="400 naming column `sex` and row 0",
        why="A model trained on strings fails on a number (MLflow then answers 400 with a stack "
        "trace) or, with an encoder that ignores unknown categories, silently predicts as if "
        "the value were missing.",
    ),
    Difference(
        key="null-into-string",
        topic="null in a `string` column sent as `inputs` or `instances`",
        example='`{"inputs": {"sex": [null]}}`, `sex` string',
        mlflow='200: the model gets the string `"None"`',
        turnout="400 naming column `sex` and row 0",
        why=_CHANGED + " In `dataframe_split` and `dataframe_records` null stays a missing "
        "value, as in MLflow.",
    ),
    Difference(
        key="nested-value",
        topic="A list or an object as one cell's value",
        example='`{"dataframe_records": [{"sex": ["f", "m"]}]}`, `sex` string',
        mlflow="200 from the reading: the list reaches the model, which fails on it",
        turnout="400 naming column `sex` and row 0",
        why="A signature column holds one value per row; the client's mistake deserves a 400 "
        "naming it, not a model failure.",
    ),
    Difference(
        key="empty-list-into-number",
        topic="An empty list as one cell's value in a `double` or `float` column",
        example='`{"instances": [{"temp": []}]}`, `temp` double',
        mlflow="200: the model gets `temp` = NaN, a missing value the client never sent",
        turnout="400 naming column `temp` and row 0",
        why=_CHANGED + " (MLflow refuses other lists in number columns itself.)",
    ),
    Difference(
        key="csv-boolean-into-number",
        topic="`true` or `false` in a number column of a CSV payload",
        example="`season,temp\\ntrue,0.3` as text/csv, `season` long",
        mlflow="200: the model gets `season` = 1",
        turnout="400 naming column `season` and row 0",
        why=_CHANGED,
    ),
    Difference(
        key="deep-nesting",
        topic="JSON nested past Python's recursion limit",
        example='`{"inputs": [[[[...]]]]}` nested 5,000 deep (or 100,000, past the JSON reader)',
        mlflow="500: `RecursionError` escapes the scoring server",
        turnout="400: the payload is nested too deeply to read",
        why="The client's payload is at fault; a 500 pages the model's operators for nothing.",
    ),
    Difference(
        key="unhashable-column-name",
        topic="A list or an object as a `dataframe_split` column name",
        example='`{"dataframe_split": {"columns": [["season"], "temp"], "data": [[3, 0.3]]}}`',
        mlflow="500: `TypeError: unhashable type` escapes the scoring server",
        turnout="400: the payload cannot be read as a DataFrame",
        why="The client's payload is at fault; a 500 pages the model's operators for nothing.",
    ),
]
