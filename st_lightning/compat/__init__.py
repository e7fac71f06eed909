"""Every private attribute of Lightning and transformers that st_lightning uses, in one place.

Each is checked when its module is imported (`lightning.py` by the training side,
`transformers.py` by the encoder side), so a release that renamed one fails at start-up with
the attribute's name and the versions it was tested with, instead of silently losing a
checkpoint on SIGTERM or running a BERT layer wrongly.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

# The versions the test suite runs against (constraints.txt), and the newest ones CI also
# runs the fast suite against (.ci/run); pyproject.toml allows this range.
TESTED = {
    "lightning": "2.6.6",
    "transformers": "5.23.0 (and the newest 5.x CI finds)",
}


class IncompatibleVersion(ImportError):
    """A dependency lacks an internal attribute that st_lightning relies on."""


def _attributes(cls: type) -> set[str]:
    """Names `cls` defines, or assigns on its instances in `__init__` (read from the
    compiled code, so nothing is constructed)."""
    init = inspect.unwrap(cls.__init__)  # type: ignore[misc]
    code = getattr(init, "__code__", None)
    assigned = set(code.co_names) if code is not None else set()
    return assigned | {n for klass in cls.__mro__ for n in vars(klass)}


def require(package: str, version: str, cls: type, names: Iterable[str]) -> None:
    """Fail with an `IncompatibleVersion` naming each of `names` that `cls` lacks."""
    missing = [n for n in names if n not in _attributes(cls)]
    if missing:
        attrs = ", ".join(f"{cls.__qualname__}.{n}" for n in missing)
        raise IncompatibleVersion(
            f"{package} {version} has no {attrs}, which st_lightning uses (tested with "
            f"{package} {TESTED[package]}). Install a tested version, e.g. pip install -c "
            "constraints.txt -e ., or report the release as incompatible."
        )
