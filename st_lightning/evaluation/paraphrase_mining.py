"""ParaphraseMiningEvaluator: find the duplicate pairs among a set of sentences."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup
from st_lightning.similarity import similarity_matrix


class ParaphraseMiningEvaluator(Evaluator):
    """Mines the most similar pairs (each sentence's `top_k` neighbours, at most `max_pairs`)
    and scores them against the known duplicates: average precision, and the best F1 with its
    precision, recall and threshold.

    Args:
        sentences: id -> sentence.
        duplicates: pairs of ids that are paraphrases (symmetric).
    """

    def __init__(
        self,
        sentences: Mapping[str, str],
        duplicates: Iterable[tuple[str, str]],
        name: str = "paraphrase_mining",
        top_k: int = 100,
        max_pairs: int = 500_000,
        truncate_dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, truncate_dim, batch_size)
        self.ids = [str(i) for i in sentences]
        self.sentences = list(sentences.values())
        if len(self.sentences) < 2:
            raise ValueError(f"Evaluator {name!r}: paraphrase mining needs at least 2 sentences.")
        known = set(self.ids)
        self.duplicates = {frozenset((str(a), str(b))) for a, b in duplicates if str(a) != str(b)}
        unknown = {i for pair in self.duplicates for i in pair} - known
        if unknown:
            raise ValueError(
                f"Evaluator {name!r}: duplicates name unknown ids {sorted(unknown)[:3]}."
            )
        if not self.duplicates:
            raise ValueError(f"Evaluator {name!r}: no duplicate pairs to find.")
        self.top_k = top_k
        self.max_pairs = max_pairs

    @property
    def primary_metric(self) -> str:
        return "average_precision"

    def inputs(self) -> dict[str, TextGroup]:
        return {"sentences": TextGroup(self.sentences)}

    def mine(self, x: Tensor) -> list[tuple[float, int, int]]:
        """(score, i, j) with i < j, highest first: each sentence's top_k other sentences."""
        scores = similarity_matrix(x, x, "cosine")
        scores.fill_diagonal_(-torch.inf)
        k = min(self.top_k, len(x) - 1)
        values, index = scores.topk(k, dim=1)
        pairs: dict[tuple[int, int], float] = {}
        for i, (row_values, row_index) in enumerate(
            zip(values.tolist(), index.tolist(), strict=True)
        ):
            for score, j in zip(row_values, row_index, strict=True):
                key = (min(i, j), max(i, j))
                pairs[key] = max(score, pairs.get(key, -float("inf")))
        ranked = sorted(((s, i, j) for (i, j), s in pairs.items()), key=lambda p: -p[0])
        return ranked[: self.max_pairs]

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        mined = self.mine(embeddings["sentences"])
        total = len(self.duplicates)
        taken = correct = previous = 0
        ap = best_f1 = best_p = best_r = threshold = 0.0
        for n, (score, i, j) in enumerate(mined):
            taken += 1
            correct += frozenset((self.ids[i], self.ids[j])) in self.duplicates
            if n + 1 < len(mined) and mined[n + 1][0] == score:
                continue  # tied scores are one threshold
            if correct > previous:
                precision, recall = correct / taken, correct / total
                ap += precision * (correct - previous)
                f1 = 2 * precision * recall / (precision + recall)
                if f1 > best_f1:
                    best_f1, best_p, best_r = f1, precision, recall
                    threshold = (score + mined[min(n + 1, len(mined) - 1)][0]) / 2
            previous = correct
        return {
            "average_precision": ap / total,
            "f1": best_f1,
            "precision": best_p,
            "recall": best_r,
            "threshold": threshold,
        }
