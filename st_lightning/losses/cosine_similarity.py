"""CosineSimilarityLoss: regress the cosine similarity of a pair onto its gold score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.losses.citations import SBERT
from st_lightning.utils.checks import check_choice


class CosineSimilarityLoss(EmbeddingLoss):
    """Columns: (sentence1, sentence2) + float score in [-1, 1] (usually [0, 1]).

    Loss: mean((cos(u, v) - score)^2), or the L1 error with `error="l1"`
    (Reimers & Gurevych, 2019).
    """

    label: ClassVar[LabelKind] = "score"
    citation = SBERT

    def __init__(self, error: str = "mse") -> None:
        super().__init__()
        check_choice("error", error, ("mse", "l1"))
        self.error = error

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        cos = F.cosine_similarity(embeddings[0], embeddings[1], dim=-1)
        target = labels.view(-1).to(cos.dtype)
        return F.mse_loss(cos, target) if self.error == "mse" else F.l1_loss(cos, target)
