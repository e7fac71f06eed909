"""Building plural config nodes (evaluators, callbacks, loggers, losses) by name."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig


def instantiate_named(node: DictConfig | dict | None, **kwargs: Any) -> dict[str, Any]:
    """name -> object for each entry with a `_target_`; entries set to null are skipped."""
    if not node:
        return {}
    out = {}
    for name, sub in node.items():
        if sub is None:
            continue
        if not (isinstance(sub, dict | DictConfig) and "_target_" in sub):
            raise ValueError(f"Config entry {name!r} has no _target_; got {sub!r}.")
        out[str(name)] = instantiate(sub, **kwargs)
    return out
