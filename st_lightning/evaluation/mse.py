"""MSEEvaluator: how close the student's embeddings of the targets are to the teacher's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup, check_same_length


class MSEEvaluator(Evaluator):
    """MSE x 100 between teacher embeddings of the sources and the model's embeddings of the
    targets (e.g. translations). Metric: `negative_mse` (primary; higher is better).

    Args:
        teacher_embeddings: the teacher's embeddings of the source sentences, (n, dim); compute
            them once with `teacher.encode(sources)`.
        target_sentences: the texts the trained model embeds.
    """

    def __init__(
        self,
        teacher_embeddings: Tensor | Sequence[Sequence[float]],
        target_sentences: Sequence[str],
        name: str = "mse",
        truncate_dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, truncate_dim, batch_size)
        teacher = torch.as_tensor(teacher_embeddings, dtype=torch.float32)
        check_same_length(name, teacher_embeddings=list(teacher), target_sentences=target_sentences)
        self.teacher = teacher[:, :truncate_dim] if truncate_dim else teacher
        self.targets = list(target_sentences)

    @property
    def primary_metric(self) -> str:
        return "negative_mse"

    def inputs(self) -> dict[str, TextGroup]:
        return {"targets": TextGroup(self.targets)}

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        student = embeddings["targets"]
        if student.shape != self.teacher.shape:
            raise ValueError(
                f"Evaluator {self.name!r}: student embeddings {tuple(student.shape)} and teacher "
                f"embeddings {tuple(self.teacher.shape)} differ in shape."
            )
        mse = ((self.teacher.to(student.device) - student) ** 2).mean() * 100
        return {"negative_mse": -float(mse)}
