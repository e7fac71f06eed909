"""TripletLoss: the anchor must be closer to the positive than to the negative, by a margin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss
from st_lightning.similarity import check_distance, pairwise_distance


class TripletLoss(EmbeddingLoss):
    """Columns: (anchor, positive, negative); no label.

    Loss: mean(relu(d(a, p) - d(a, n) + margin)) (Schroff et al., 2015). The default
    (euclidean, margin 5) suits unnormalised embeddings; with `distance="cosine"` a margin
    near 0.3 suits distances in [0, 2].
    """

    min_inputs: ClassVar[int] = 3
    max_inputs: ClassVar[int | None] = 3
    citation = """@misc{schroff2015facenet,
    title={FaceNet: A Unified Embedding for Face Recognition and Clustering},
    author={Florian Schroff and Dmitry Kalenichenko and James Philbin},
    year={2015}, eprint={1503.03832}, archivePrefix={arXiv}
}"""

    def __init__(self, distance: str = "euclidean", margin: float = 5.0) -> None:
        super().__init__()
        check_distance(distance)
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}.")
        self.distance = distance
        self.margin = margin

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        a, p, n = embeddings
        d_pos = pairwise_distance(a, p, self.distance)
        d_neg = pairwise_distance(a, n, self.distance)
        return F.relu(d_pos - d_neg + self.margin).mean()
