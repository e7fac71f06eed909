"""BatchAllTripletLoss: every valid triplet of the batch."""

from __future__ import annotations

from torch import Tensor

from st_lightning.losses.batch_triplet import BatchTripletLoss


class BatchAllTripletLoss(BatchTripletLoss):
    """Columns: (text) + class label.

    Loss: the sum of relu(d(a,p) - d(a,n) + margin) over all triplets (a != p same label, n other
    label), divided by the number of triplets with a positive loss.
    """

    def mined_loss(self, dist: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        # [a, p, n] = d(a, p) - d(a, n) + margin, kept where (a, p) positive and (a, n) negative
        losses = dist[:, :, None] - dist[:, None, :] + self.margin
        valid = positive[:, :, None] & negative[:, None, :]
        losses = (losses * valid).clamp(min=0)
        active = (losses > 1e-16).sum()
        return losses.sum() / (active + 1e-16)
