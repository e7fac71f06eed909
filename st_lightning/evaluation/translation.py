"""TranslationEvaluator: does each sentence retrieve its own translation?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup, check_same_length
from st_lightning.similarity import similarity_matrix


class TranslationEvaluator(Evaluator):
    """Accuracy of finding the aligned sentence as the most similar one, both directions
    (a retrieved copy of the same text counts as found).

    Metrics: `src2trg_accuracy`, `trg2src_accuracy`, `mean_accuracy` (primary).
    """

    def __init__(
        self,
        source_sentences: Sequence[str],
        target_sentences: Sequence[str],
        name: str = "translation",
        truncate_dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, truncate_dim, batch_size)
        check_same_length(
            name, source_sentences=source_sentences, target_sentences=target_sentences
        )
        self.source, self.target = list(source_sentences), list(target_sentences)

    @property
    def primary_metric(self) -> str:
        return "mean_accuracy"

    def inputs(self) -> dict[str, TextGroup]:
        return {"source": TextGroup(self.source), "target": TextGroup(self.target)}

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        sims = similarity_matrix(embeddings["source"], embeddings["target"], "cosine")
        # A hit is the right text: a repeated sentence may match any of its copies.
        to_target = sims.argmax(dim=1).tolist()
        to_source = sims.argmax(dim=0).tolist()
        n = len(self.source)
        src2trg = sum(self.target[j] == self.target[i] for i, j in enumerate(to_target)) / n
        trg2src = sum(self.source[j] == self.source[i] for i, j in enumerate(to_source)) / n
        return {
            "src2trg_accuracy": src2trg,
            "trg2src_accuracy": trg2src,
            "mean_accuracy": (src2trg + trg2src) / 2,
        }
