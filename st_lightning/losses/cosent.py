"""CoSENTLoss: rank every pair of pairs by their gold scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.similarity import check_similarity, pairwise_similarity
from st_lightning.utils.checks import check_positive


def ranked_pairs_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """log(1 + sum over (i, j) with label_i > label_j of exp(s_j - s_i)); scores already scaled."""
    diff = scores[None, :] - scores[:, None]  # [i, j] = s_j - s_i
    ordered = labels[:, None] > labels[None, :]
    diff = diff.masked_fill(~ordered, -torch.inf).flatten()
    return torch.logsumexp(torch.cat([diff.new_zeros(1), diff]), dim=0)


class CoSENTLoss(EmbeddingLoss):
    """Pairs with a higher gold score must get a higher similarity than pairs with a lower one.

    Columns: (sentence1, sentence2) + float score. Loss:
    log(1 + sum_{s(i) > s(j)} exp(scale * (cos(j) - cos(i)))) (Su, 2022).
    """

    label: ClassVar[LabelKind] = "score"
    citation = """@online{kexuefm-8847,
    title={CoSENT: A more efficient sentence vector scheme than Sentence-BERT},
    author={Su Jianlin}, year={2022}, url={https://kexue.fm/archives/8847}
}"""

    def __init__(self, scale: float = 20.0, similarity: str = "cosine") -> None:
        super().__init__()
        check_positive("scale", scale)
        check_similarity(similarity)
        self.scale = scale
        self.similarity = similarity

    def pair_scores(self, a: Tensor, b: Tensor) -> Tensor:
        return pairwise_similarity(a, b, self.similarity)

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        scores = self.pair_scores(embeddings[0], embeddings[1]) * self.scale
        return ranked_pairs_loss(scores, labels.view(-1))
