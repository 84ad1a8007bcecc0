"""What a model that cannot be imported lacks, in words an operator acts on.

MLflow logs a model's pip requirements beside it (`requirements.txt`), and loading the model
imports its flavor's library (`xgboost`, `lightgbm`, ...). When the image lacks that library the
import fails naming a *module*; this module names the *package* to add, with the line of the
model's own requirements that asks for it, so the one-line reason a pod ends with says what to
build into the image (docs/flavors.md). Pure: the caller reads the file and catches the error.
"""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement

# Modules whose package has another name (the ones MLflow's flavors and their users import).
PACKAGE_OF_MODULE = {
    "sklearn": "scikit-learn",
    "skops": "skops",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "google.protobuf": "protobuf",
    "tf_keras": "tf-keras",
}


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(text: str) -> list[Requirement]:
    """The requirements of a `requirements.txt` MLflow wrote; pip options (`-r`, `--index-url`),
    comments and lines that are not requirements are left out."""
    found = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            continue
    return found


def missing_package(module: str, requirements: str | None) -> str:
    """The reason a model needing `module` (the name an ImportError gives, maybe dotted) cannot
    load here, naming its package and the requirement the model logged for it."""
    top = module.split(".")[0]
    package = PACKAGE_OF_MODULE.get(module) or PACKAGE_OF_MODULE.get(top) or top
    wanted = next(
        (
            r
            for r in requirement_lines(requirements or "")
            if normalized(r.name) == normalized(package)
        ),
        None,
    )
    if wanted is not None:
        logged = f"{wanted} in its requirements.txt"
    elif requirements is None:
        logged = "the model logged no requirements.txt"
    else:
        logged = "not in its requirements.txt"
    return f"the model needs package {package!r} ({logged}), which this image does not have"
