"""Similarities and distances between embeddings, by name (the names configs use)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from st_lightning.utils.checks import check_choice

Similarity = Literal["cosine", "dot", "euclidean", "manhattan"]
SIMILARITIES: tuple[str, ...] = ("cosine", "dot", "euclidean", "manhattan")
Distance = Literal["cosine", "euclidean", "manhattan"]
DISTANCES: tuple[str, ...] = ("cosine", "euclidean", "manhattan")


def check_similarity(name: str) -> None:
    check_choice("similarity function", name, SIMILARITIES)


def check_distance(name: str) -> None:
    check_choice("distance metric", name, DISTANCES)


def similarity_matrix(a: Tensor, b: Tensor, name: str = "cosine") -> Tensor:
    """(len(a), len(b)) similarities; euclidean and manhattan are negated distances."""
    if name == "cosine":
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    if name == "dot":
        return a @ b.T
    if name == "euclidean":
        return -torch.cdist(a, b, p=2.0)
    if name == "manhattan":
        return -torch.cdist(a, b, p=1.0)
    raise ValueError(f"Unknown similarity function {name!r}; choose one of {SIMILARITIES}.")


def pairwise_similarity(a: Tensor, b: Tensor, name: str = "cosine") -> Tensor:
    """Row-wise similarity of aligned rows: (batch,)."""
    if name == "cosine":
        return F.cosine_similarity(a, b, dim=-1)
    if name == "dot":
        return (a * b).sum(-1)
    if name == "euclidean":
        return -(a - b).norm(p=2, dim=-1)
    if name == "manhattan":
        return -(a - b).abs().sum(-1)
    raise ValueError(f"Unknown similarity function {name!r}; choose one of {SIMILARITIES}.")


def pairwise_distance(a: Tensor, b: Tensor, name: str = "euclidean") -> Tensor:
    """Row-wise distance of aligned rows: (batch,). Euclidean/manhattan follow
    `torch.nn.functional.pairwise_distance` (eps 1e-6 inside the norm)."""
    if name == "cosine":
        return 1.0 - F.cosine_similarity(a, b, dim=-1)
    if name == "euclidean":
        return F.pairwise_distance(a, b, p=2)
    if name == "manhattan":
        return F.pairwise_distance(a, b, p=1)
    raise ValueError(f"Unknown distance metric {name!r}; choose one of {DISTANCES}.")


def distance_matrix(x: Tensor, name: str = "euclidean") -> Tensor:
    """(batch, batch) distances among the rows of `x`, exactly 0 on the diagonal.

    Euclidean goes through the Gram matrix (half precision upcast to float32), with a sqrt whose
    gradient is kept finite where a distance is 0.
    """
    if name == "cosine":
        return 1.0 - similarity_matrix(x, x, "cosine")
    if name == "manhattan":
        return torch.cdist(x, x, p=1.0)
    if name != "euclidean":
        raise ValueError(f"Unknown distance metric {name!r}; choose one of {DISTANCES}.")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    gram = x @ x.T
    sq = gram.diagonal()
    squared = (sq.unsqueeze(0) - 2.0 * gram + sq.unsqueeze(1)).clamp(min=0.0)
    zero = squared == 0
    return torch.sqrt(squared + zero.to(x.dtype) * 1e-16) * (~zero).to(x.dtype)
