"""Pairwise scores for evaluators, named as in configs."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

SIMILARITY_FNS = ("cosine", "dot", "euclidean", "manhattan")


def paired_scores(a: Tensor, b: Tensor, fn: str) -> Tensor:
    """Similarity of aligned rows; euclidean and manhattan are negated distances."""
    if fn == "cosine":
        return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)
    if fn == "dot":
        return (a * b).sum(-1)
    if fn == "euclidean":
        return -(a - b).norm(dim=-1)
    if fn == "manhattan":
        return -(a - b).abs().sum(-1)
    raise ValueError(f"Unknown similarity function {fn!r}; choose from {SIMILARITY_FNS}.")


def check_fns(fns: list[str]) -> list[str]:
    bad = [f for f in fns if f not in SIMILARITY_FNS]
    if bad or not fns:
        raise ValueError(
            f"Unknown similarity function(s) {bad or fns}; choose from {SIMILARITY_FNS}."
        )
    return list(fns)
