"""MarginMSELoss: match the teacher's score margins between positive and negatives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.similarity import check_similarity, pairwise_similarity


class MarginMSELoss(EmbeddingLoss):
    """Columns: (query, positive, negative_1[, ..., negative_k]) + teacher scores.

    The label is the teacher's margins sim(q, p) - sim(q, n_i), shape (batch,) or (batch, k), or
    its raw scores (batch, 1 + k) [positive first], from which the margins are taken.
    Loss: MSE between the student's margins and the teacher's (Hofstätter et al., 2020).
    """

    min_inputs: ClassVar[int] = 3
    max_inputs: ClassVar[int | None] = None
    label: ClassVar[LabelKind] = "teacher_score"
    citation = """@misc{hofstatter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture
    Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan
    and Allan Hanbury}, year={2021}, eprint={2010.02666}, archivePrefix={arXiv}
}"""

    def __init__(self, similarity: str = "dot") -> None:
        super().__init__()
        check_similarity(similarity)
        self.similarity = similarity

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        q, p, negatives = embeddings[0], embeddings[1], embeddings[2:]
        b, k = q.shape[0], len(negatives)
        labels = labels.detach()
        if labels.shape == (b, k + 1):
            labels = labels[:, :1] - labels[:, 1:]
        elif labels.shape == (b,):
            labels = labels[:, None]
        if labels.shape != (b, k):
            raise ValueError(
                f"Teacher labels of shape {tuple(labels.shape)} fit neither margins ({b}, {k}) "
                f"nor scores ({b}, {k + 1}) for {k} negative column(s)."
            )
        pos = pairwise_similarity(q, p, self.similarity)
        margins = torch.stack(
            [pos - pairwise_similarity(q, n, self.similarity) for n in negatives], 1
        )
        return F.mse_loss(margins, labels.to(margins.dtype))
