"""BatchSemiHardTripletLoss: for each positive pair, the closest negative that is still farther."""

from __future__ import annotations

import torch
from torch import Tensor

from st_lightning.losses.batch_triplet import BatchTripletLoss


class BatchSemiHardTripletLoss(BatchTripletLoss):
    """Columns: (text) + class label (Schroff et al., 2015).

    For each positive pair (a, p): the negative n with the smallest d(a, n) > d(a, p); when there
    is none, the farthest negative of a. Loss: mean over positive pairs of
    relu(d(a, p) - d(a, n) + margin).
    """

    citation = """@misc{schroff2015facenet,
    title={FaceNet: A Unified Embedding for Face Recognition and Clustering},
    author={Florian Schroff and Dmitry Kalenichenko and James Philbin},
    year={2015}, eprint={1503.03832}, archivePrefix={arXiv}
}"""

    def mined_loss(self, dist: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        # [a, p, n]: is n a negative of a farther from a than p is?
        farther = negative[:, None, :] & (dist[:, None, :] > dist[:, :, None])
        inf = torch.tensor(torch.inf, dtype=dist.dtype, device=dist.device)
        outside = torch.where(farther, dist[:, None, :], inf).min(dim=2).values
        # Fallback: the farthest negative; an anchor without negatives gets its row minimum.
        row_min = dist.min(dim=1, keepdim=True).values
        inside = torch.where(negative, dist, row_min).max(dim=1, keepdim=True).values
        chosen = torch.where(torch.isfinite(outside), outside, inside)
        losses = (dist - chosen + self.margin).clamp(min=0) * positive
        return losses.sum() / positive.sum().clamp(min=1e-16)
