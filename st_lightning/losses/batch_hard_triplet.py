"""BatchHardTripletLoss: the hardest positive and hardest negative of each anchor."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.batch_triplet import BatchTripletLoss


class BatchHardTripletLoss(BatchTripletLoss):
    """Columns: (text) + class label. Loss: mean_a relu(max_p d(a,p) - min_n d(a,n) + margin)."""

    def mined_loss(self, dist: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        hardest_pos, hardest_neg = self.hardest(dist, positive, negative)
        return F.relu(hardest_pos - hardest_neg + self.margin).mean()
