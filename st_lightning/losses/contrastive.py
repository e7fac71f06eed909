"""ContrastiveLoss: pull positive pairs together, push negatives beyond a margin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.similarity import check_distance, pairwise_distance


class ContrastiveLoss(EmbeddingLoss):
    """Columns: (sentence1, sentence2) + 0/1 label (1 = similar).

    Loss: 0.5 * (y * d^2 + (1 - y) * relu(margin - d)^2), averaged (or summed) over pairs, with
    d the cosine distance by default (Hadsell et al., 2006).
    """

    label: ClassVar[LabelKind] = "binary"
    citation = """@inproceedings{hadsell2006dimensionality,
    author={Hadsell, R. and Chopra, S. and LeCun, Y.},
    booktitle={CVPR 2006}, title={Dimensionality Reduction by Learning an Invariant Mapping},
    year={2006}, pages={1735-1742}, doi={10.1109/CVPR.2006.100}
}"""

    def __init__(self, distance: str = "cosine", margin: float = 0.5, average: bool = True) -> None:
        super().__init__()
        check_distance(distance)
        self.distance = distance
        self.margin = margin
        self.average = average

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        d = pairwise_distance(embeddings[0], embeddings[1], self.distance)
        y = labels.view(-1).to(d.dtype)
        losses = 0.5 * (y * d.pow(2) + (1 - y) * F.relu(self.margin - d).pow(2))
        return losses.mean() if self.average else losses.sum()
