"""EmbedDistillLoss and MSELoss: match a teacher's embeddings (knowledge distillation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.utils.checks import check_choice


class EmbedDistillLoss(EmbeddingLoss):
    """Columns: one or more texts + the teacher's embeddings as the label.

    The label is (batch, dim), shared by every column (e.g. a sentence and its translation), or
    (batch, columns, dim), one per column. Loss: the mean over columns of the distance between
    the student's embedding (optionally through a trained linear projection) and the teacher's:
    "mse", "l2" (mean Euclidean norm) or "cosine" (mean 1 - cos).

    Args:
        distance: "cosine", "mse" or "l2".
        projection_dim: if set, a trained `Linear(embedding_dimension, projection_dim)` maps the
            student into the teacher's space (its parameters belong to the loss).
        embedding_dimension: the student's width; required with `projection_dim`.
    """

    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    label: ClassVar[LabelKind] = "teacher_embedding"
    citation = """@inproceedings{reimers-2020-multilingual-sentence-bert,
    title = "Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of EMNLP 2020", year = "2020",
    url = "https://arxiv.org/abs/2004.09813"
}"""

    def __init__(
        self,
        distance: str = "cosine",
        projection_dim: int | None = None,
        embedding_dimension: int | None = None,
    ) -> None:
        super().__init__()
        check_choice("distance", distance, ("cosine", "mse", "l2"))
        self.distance = distance
        self.projection_dim = projection_dim
        self.embedding_dimension = embedding_dimension
        self.projection: nn.Linear | None = None
        if projection_dim is not None:
            if embedding_dimension is None:
                raise ValueError("projection_dim needs embedding_dimension (the student's width).")
            self.projection = nn.Linear(embedding_dimension, projection_dim)

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs teacher embeddings as labels.")
        labels = labels.detach()
        if labels.dim() == 2:
            teachers = [labels] * len(embeddings)
        elif labels.dim() == 3 and labels.shape[1] == len(embeddings):
            teachers = list(labels.unbind(1))
        else:
            raise ValueError(
                f"Teacher embeddings of shape {tuple(labels.shape)} fit neither (batch, dim) nor "
                f"(batch, {len(embeddings)} columns, dim)."
            )
        losses = []
        for student, teacher in zip(embeddings, teachers, strict=True):
            if self.projection is not None:
                student = self.projection(student)
            teacher = teacher.to(student.dtype)
            if student.shape[-1] != teacher.shape[-1]:
                raise ValueError(
                    f"Student embeddings have width {student.shape[-1]} but the teacher's have "
                    f"{teacher.shape[-1]}; set projection_dim={teacher.shape[-1]} to map between."
                )
            if self.distance == "mse":
                losses.append(F.mse_loss(student, teacher))
            elif self.distance == "l2":
                losses.append((student - teacher).norm(dim=-1).mean())
            else:
                losses.append((1 - F.cosine_similarity(student, teacher, dim=-1)).mean())
        return torch.stack(losses).mean()


class MSELoss(EmbedDistillLoss):
    """EmbedDistillLoss with the mean squared error (Reimers & Gurevych, 2020)."""

    def __init__(
        self, projection_dim: int | None = None, embedding_dimension: int | None = None
    ) -> None:
        super().__init__("mse", projection_dim, embedding_dimension)
