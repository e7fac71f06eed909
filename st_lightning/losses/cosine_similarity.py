"""CosineSimilarityLoss: regress the cosine similarity of a pair onto its gold score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LabelKind, check_choice


class CosineSimilarityLoss(EmbeddingLoss):
    """Columns: (sentence1, sentence2) + float score in [-1, 1] (usually [0, 1]).

    Loss: mean((cos(u, v) - score)^2), or the L1 error with `error="l1"`
    (Reimers & Gurevych, 2019).
    """

    label: ClassVar[LabelKind] = "score"
    citation = """@inproceedings{reimers-2019-sentence-bert,
    title = "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of EMNLP-IJCNLP 2019", year = "2019",
    url = "https://arxiv.org/abs/1908.10084"
}"""

    def __init__(self, error: str = "mse") -> None:
        super().__init__()
        check_choice("error", error, ("mse", "l1"))
        self.error = error

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        cos = F.cosine_similarity(embeddings[0], embeddings[1], dim=-1)
        target = labels.view(-1).to(cos.dtype)
        return F.mse_loss(cos, target) if self.error == "mse" else F.l1_loss(cos, target)
