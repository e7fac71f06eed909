"""SoftmaxLoss: a linear classifier over (u, v, |u - v|[, u * v]), trained with the encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.losses.citations import SBERT
from st_lightning.utils.checks import check_positive


class SoftmaxLoss(EmbeddingLoss):
    """Columns: (premise, hypothesis) + integer class label (NLI: 0, 1, 2).

    Loss: cross-entropy of `classifier([u, v, |u - v|])` (Reimers & Gurevych, 2019). The
    classifier is a parameter of the loss, so the optimizer must cover the loss's parameters
    (EmbeddingModule does); it is not part of the saved encoder.
    """

    label: ClassVar[LabelKind] = "class"
    citation = SBERT

    def __init__(
        self,
        embedding_dimension: int,
        num_labels: int,
        concatenation_sent_rep: bool = True,
        concatenation_sent_difference: bool = True,
        concatenation_sent_multiplication: bool = False,
    ) -> None:
        super().__init__()
        check_positive("embedding_dimension", embedding_dimension)
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}.")
        parts = 2 * concatenation_sent_rep + concatenation_sent_difference
        parts += concatenation_sent_multiplication
        if parts == 0:
            raise ValueError("SoftmaxLoss needs at least one of the concatenation options.")
        self.embedding_dimension = embedding_dimension
        self.num_labels = num_labels
        self.concatenation_sent_rep = concatenation_sent_rep
        self.concatenation_sent_difference = concatenation_sent_difference
        self.concatenation_sent_multiplication = concatenation_sent_multiplication
        self.classifier = nn.Linear(parts * embedding_dimension, num_labels)

    def check_embedding_dimension(self, dim: int) -> None:
        if dim != self.embedding_dimension:
            raise ValueError(
                f"SoftmaxLoss was built for embedding_dimension={self.embedding_dimension} but the "
                f"encoder gives {dim}; set embedding_dimension={dim}."
            )

    def features(self, u: Tensor, v: Tensor) -> Tensor:
        parts = [u, v] if self.concatenation_sent_rep else []
        if self.concatenation_sent_difference:
            parts.append((u - v).abs())
        if self.concatenation_sent_multiplication:
            parts.append(u * v)
        return torch.cat(parts, dim=1).to(self.classifier.weight.dtype)

    def logits(self, u: Tensor, v: Tensor) -> Tensor:
        return self.classifier(self.features(u, v))

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        u, v = embeddings
        self.check_embedding_dimension(u.shape[1])
        return F.cross_entropy(self.logits(u, v), labels.view(-1).long())
