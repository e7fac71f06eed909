"""DistillKLDivLoss: match the teacher's distribution over the candidates of each query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LabelKind
from st_lightning.similarity import check_similarity, pairwise_similarity
from st_lightning.utils.checks import check_positive


class DistillKLDivLoss(EmbeddingLoss):
    """Columns: (query, positive, negative_1[, ..., negative_k]) + teacher scores (batch, 1 + k).

    Loss: KL(softmax(teacher / T_t) || softmax(student / T_s)), averaged over the batch and
    multiplied by T_s^2 so gradients keep their size across temperatures (Hinton et al., 2015).
    """

    min_inputs: ClassVar[int] = 3
    max_inputs: ClassVar[int | None] = None
    label: ClassVar[LabelKind] = "teacher_score"
    citation = """@misc{lin2020distilling,
    title={Distilling Dense Representations for Ranking using Tightly-Coupled Teachers},
    author={Sheng-Chieh Lin and Jheng-Hong Yang and Jimmy Lin},
    year={2020}, eprint={2010.11386}, archivePrefix={arXiv}
}"""

    def __init__(
        self,
        similarity: str = "dot",
        temperature: float = 1.0,
        student_temperature: float | None = None,
        teacher_temperature: float | None = None,
    ) -> None:
        super().__init__()
        check_similarity(similarity)
        self.similarity = similarity
        self.temperature = temperature
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.t_student = student_temperature if student_temperature is not None else temperature
        self.t_teacher = teacher_temperature if teacher_temperature is not None else temperature
        check_positive("student temperature", self.t_student)
        check_positive("teacher temperature", self.t_teacher)

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        q, candidates = embeddings[0], embeddings[1:]
        if labels.shape != (q.shape[0], len(candidates)):
            raise ValueError(
                f"Teacher scores of shape {tuple(labels.shape)} do not match "
                f"({q.shape[0]}, {len(candidates)}): one score per candidate column."
            )
        student = torch.stack([pairwise_similarity(q, c, self.similarity) for c in candidates], 1)
        log_p = F.log_softmax(student / self.t_student, dim=1)
        target = F.softmax(labels.detach().to(student.dtype) / self.t_teacher, dim=1)
        return F.kl_div(log_p, target, reduction="batchmean") * self.t_student**2
