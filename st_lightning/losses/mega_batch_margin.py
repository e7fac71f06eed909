"""MegaBatchMarginLoss: each anchor against the hardest other positive of a large batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss
from st_lightning.similarity import similarity_matrix


class MegaBatchMarginLoss(EmbeddingLoss):
    """Columns: (anchor, positive); no label (Wieting & Gimpel, 2018).

    Loss: mean_i relu(pos_margin - cos(a_i, p_i)) + relu(max_{j != i} cos(a_i, p_j) - neg_margin).
    The batch should be large (the paper uses 500+); combine it with gradient caching
    (`mini_batch_size`) to keep memory flat.
    """

    citation = """@inproceedings{wieting-gimpel-2018-paranmt,
    title = "{P}ara{NMT}-50{M}: Pushing the Limits of Paraphrastic Sentence Embeddings
    with Millions of Machine Translations", author = "Wieting, John and Gimpel, Kevin",
    booktitle = "Proceedings of ACL 2018", year = "2018", url = "https://arxiv.org/abs/1711.05732"
}"""

    def __init__(self, positive_margin: float = 0.8, negative_margin: float = 0.3) -> None:
        super().__init__()
        self.positive_margin = positive_margin
        self.negative_margin = negative_margin

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        anchors, positives = embeddings
        sims = similarity_matrix(anchors, positives, "cosine")
        pos = sims.diagonal()
        eye = torch.eye(len(sims), dtype=torch.bool, device=sims.device)
        hardest = sims.masked_fill(eye, -torch.inf).max(dim=1).values
        return (F.relu(self.positive_margin - pos) + F.relu(hardest - self.negative_margin)).mean()
