"""Prompts (text prefixes) per dataset and per column, as the reference trainer accepts them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def resolve_prompts(
    prompts: str | Mapping[str, Any] | None, inputs: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, str]]:
    """dataset -> column -> prefix, from any accepted form:

    - a string: every column of every dataset;
    - column -> string: those columns in every dataset;
    - dataset -> string or (column -> string): per dataset (keys must all be dataset names).
    """
    out: dict[str, dict[str, str]] = {name: {} for name in inputs}
    if prompts is None:
        return out
    if isinstance(prompts, str):
        return {name: dict.fromkeys(cols, prompts) for name, cols in inputs.items()}
    per_dataset = bool(prompts) and all(key in inputs for key in prompts)
    if per_dataset:
        for name, value in prompts.items():
            if isinstance(value, str):
                out[name] = dict.fromkeys(inputs[name], value)
            else:
                out[name] = _columns(name, dict(value), inputs[name])
        return out
    for name, cols in inputs.items():
        out[name] = _columns(name, dict(prompts), cols, strict=False)
    if not any(out.values()):
        raise ValueError(
            f"Prompt keys {sorted(prompts)} name neither datasets {sorted(inputs)} nor columns."
        )
    return out


def _columns(
    dataset: str, prompts: dict[str, str], columns: Sequence[str], strict: bool = True
) -> dict[str, str]:
    unknown = [c for c in prompts if c not in columns]
    if strict and unknown:
        raise ValueError(f"Prompts for dataset {dataset!r} name unknown columns {unknown}.")
    return {c: p for c, p in prompts.items() if c in columns}
