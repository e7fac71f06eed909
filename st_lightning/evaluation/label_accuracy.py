"""LabelAccuracyEvaluator: accuracy of the SoftmaxLoss classifier on labelled pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup, check_same_length
from st_lightning.losses.softmax import SoftmaxLoss


class LabelAccuracyEvaluator(Evaluator):
    """Share of pairs whose class the trained SoftmaxLoss classifier predicts.

    Metric: `accuracy`.
    """

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        labels: Sequence[int],
        softmax_loss: SoftmaxLoss,
        name: str = "label_accuracy",
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, None, batch_size)
        check_same_length(name, sentences1=sentences1, sentences2=sentences2, labels=labels)
        self.sentences1, self.sentences2 = list(sentences1), list(sentences2)
        self.labels = torch.tensor(list(labels), dtype=torch.long)
        self.softmax_loss = softmax_loss

    @property
    def primary_metric(self) -> str:
        return "accuracy"

    def inputs(self) -> dict[str, TextGroup]:
        return {"sentences1": TextGroup(self.sentences1), "sentences2": TextGroup(self.sentences2)}

    @torch.no_grad()
    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        device = self.softmax_loss.classifier.weight.device
        u, v = embeddings["sentences1"].to(device), embeddings["sentences2"].to(device)
        predicted = self.softmax_loss.logits(u, v).argmax(dim=1).cpu()
        return {"accuracy": float((predicted == self.labels).float().mean())}
