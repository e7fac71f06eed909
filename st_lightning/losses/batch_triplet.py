"""Shared pieces of the batch triplet losses (single text column + class label)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.similarity import check_distance, distance_matrix

BATCH_TRIPLET_CITATION = """@misc{hermans2017defense,
    title={In Defense of the Triplet Loss for Person Re-Identification},
    author={Alexander Hermans and Lucas Beyer and Bastian Leibe},
    year={2017}, eprint={1703.07737}, archivePrefix={arXiv}
}"""


class BatchTripletLoss(EmbeddingLoss):
    """Base: one text column whose integer label groups rows; triplets are mined in the batch.

    Batches should hold several rows per label (the `group_by_label` batch sampler does that).
    """

    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    label: ClassVar[LabelKind] = "class"
    citation = BATCH_TRIPLET_CITATION

    def __init__(self, distance: str = "euclidean", margin: float = 5.0) -> None:
        super().__init__()
        check_distance(distance)
        self.distance = distance
        self.margin = margin

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        x = embeddings[0]
        if labels.numel() != x.shape[0]:
            raise ValueError(f"Expected {x.shape[0]} labels, one per row; got {labels.numel()}.")
        labels = labels.view(-1)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        return self.mined_loss(distance_matrix(x, self.distance), same & ~eye, ~same)

    def mined_loss(self, dist: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def hardest(dist: Tensor, positive: Tensor, negative: Tensor) -> tuple[Tensor, Tensor]:
        """Per anchor: the farthest positive (0 if none) and the closest negative (the row's
        largest distance if none)."""
        hardest_pos = (dist * positive).max(dim=1).values
        row_max = dist.max(dim=1, keepdim=True).values
        hardest_neg = torch.where(negative, dist, dist + row_max).min(dim=1).values
        return hardest_pos, hardest_neg
