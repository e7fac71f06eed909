"""The dataset format rules: which columns are inputs, which is the label, and what is valid."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "score", "labels", "scores")
# Names the trainer of the reference library uses internally; a dataset column with one of these
# names would be taken for something else there, so they are rejected here too.
RESERVED_COLUMNS = ("dataset_name", "return_loss")
_ID_LIKE = re.compile(
    r"(^|_)(id|ids|idx|index|uuid|guid|key)\d*$|^(pair|q|doc|query|corpus|question)_?id\d*$", re.I
)


@dataclass(frozen=True)
class ColumnRoles:
    """The input columns of a dataset, in order, and its label column (or None)."""

    inputs: tuple[str, ...]
    label: str | None


def column_roles(dataset: str, columns: Sequence[str]) -> ColumnRoles:
    """Apply the rules: a column named label/score/labels/scores is the label, every other
    column is an input in its order. Names otherwise do not matter."""
    reserved = [c for c in columns if c in RESERVED_COLUMNS]
    if reserved:
        raise ValueError(
            f"Dataset {dataset!r} has reserved column name(s) {reserved}; rename them "
            f"(reserved: {', '.join(RESERVED_COLUMNS)})."
        )
    labels = [c for c in columns if c in LABEL_COLUMNS]
    if len(labels) > 1:
        raise ValueError(
            f"Dataset {dataset!r} has several label columns {labels}; keep one of "
            f"{', '.join(LABEL_COLUMNS)} (select columns with `columns=`)."
        )
    inputs = tuple(c for c in columns if c not in LABEL_COLUMNS)
    if not inputs:
        raise ValueError(f"Dataset {dataset!r} has no input columns, only {list(columns)}.")
    id_like = [c for c in inputs if _ID_LIKE.search(c)]
    if id_like:
        log.warning(
            "Dataset %r: column(s) %s look like ids but will be fed to the model as text inputs; "
            "drop them with `columns=` or `remove_columns=` if they are not inputs.",
            dataset,
            id_like,
        )
    return ColumnRoles(inputs, labels[0] if labels else None)


def invalid_text_rows(values: Sequence[Any]) -> list[int]:
    """Row indices whose value is not a non-empty string."""
    return [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]


def invalid_label_rows(values: Sequence[Any]) -> list[int]:
    """Row indices whose label is missing, not numeric, or NaN/inf (scalars or vectors)."""

    def bad(v: Any) -> bool:
        if isinstance(v, bool) or v is None:
            return v is None
        if isinstance(v, int | float):
            return not math.isfinite(v)
        if isinstance(v, list | tuple):
            return not v or any(bad(x) for x in v)
        return True

    return [i for i, v in enumerate(values) if bad(v)]
