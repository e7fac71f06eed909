"""BatchHardSoftMarginTripletLoss: batch-hard mining with a soft margin (no margin to tune)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.batch_triplet import BatchTripletLoss


class BatchHardSoftMarginTripletLoss(BatchTripletLoss):
    """Columns: (text) + class label. Loss: mean_a log(1 + exp(max_p d(a,p) - min_n d(a,n)))."""

    def __init__(self, distance: str = "euclidean") -> None:
        super().__init__(distance=distance, margin=0.0)

    def mined_loss(self, dist: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        hardest_pos, hardest_neg = self.hardest(dist, positive, negative)
        return F.softplus(hardest_pos - hardest_neg).mean()
