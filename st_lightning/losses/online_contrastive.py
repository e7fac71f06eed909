"""OnlineContrastiveLoss: the contrastive loss over the hard pairs of the batch only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.losses.citations import SBERT
from st_lightning.similarity import check_distance, pairwise_distance


class OnlineContrastiveLoss(EmbeddingLoss):
    """Columns: (sentence1, sentence2) + 0/1 label (1 = similar).

    Hard positives are positive pairs farther apart than the closest negative pair; hard
    negatives are negative pairs closer than the farthest positive pair. Loss:
    sum(d_hard_pos^2) + sum(relu(margin - d_hard_neg)^2).
    """

    label: ClassVar[LabelKind] = "binary"
    citation = SBERT

    def __init__(self, distance: str = "cosine", margin: float = 0.5) -> None:
        super().__init__()
        check_distance(distance)
        self.distance = distance
        self.margin = margin

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        d = pairwise_distance(embeddings[0], embeddings[1], self.distance)
        y = labels.view(-1)
        pos, neg = d[y == 1], d[y == 0]
        # With one side empty, each side is compared with its own mean instead.
        hard_neg = neg[neg < (pos.max() if len(pos) else neg.mean())]
        hard_pos = pos[pos > (neg.min() if len(neg) else pos.mean())]
        return hard_pos.pow(2).sum() + F.relu(self.margin - hard_neg).pow(2).sum()
