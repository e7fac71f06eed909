"""BinaryClassificationEvaluator: are two texts duplicates, by a threshold on their similarity?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup, check_same_length
from st_lightning.evaluation.similarity import check_fns, paired_scores

DISTANCES = ("euclidean", "manhattan")


def best_accuracy(
    scores: np.ndarray, labels: np.ndarray, higher_is_similar: bool
) -> tuple[float, float]:
    """The best accuracy over thresholds, and that threshold (midpoint between score groups)."""
    order = np.argsort(-scores if higher_is_similar else scores, kind="stable")
    s, y = scores[order], labels[order]
    negatives_left = int((y == 0).sum())
    best = negatives_left / len(y)
    threshold = float(np.nextafter(s[0], np.inf if higher_is_similar else -np.inf, dtype=s.dtype))
    positives = 0
    for i in range(len(s)):
        positives += int(y[i] == 1)
        negatives_left -= int(y[i] == 0)
        last = i == len(s) - 1
        if not last and s[i] == s[i + 1]:
            continue
        accuracy = (positives + negatives_left) / len(y)
        if accuracy > best:
            best = accuracy
            threshold = float(s[i]) if last else float((s[i] + s[i + 1]) / 2)
            if not last and threshold == s[i + 1]:
                threshold = float(s[i])
    return best, threshold


def best_f1(
    scores: np.ndarray, labels: np.ndarray, higher_is_similar: bool
) -> tuple[float, float, float, float]:
    """The best F1 over thresholds: (f1, precision, recall, threshold)."""
    order = np.argsort(-scores if higher_is_similar else scores, kind="stable")
    s, y = scores[order], labels[order]
    total_positive = int((y == 1).sum())
    best = (0.0, 0.0, 0.0, 0.0)
    taken = correct = 0
    for i in range(len(s)):
        taken += 1
        correct += int(y[i] == 1)
        last = i == len(s) - 1
        if (not last and s[i] == s[i + 1]) or correct == 0:
            continue
        precision, recall = correct / taken, correct / total_positive
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best[0]:
            threshold = float(s[i]) if last else float((s[i] + s[i + 1]) / 2)
            if not last and threshold == s[i + 1]:
                threshold = float(s[i])
            best = (f1, precision, recall, threshold)
    return best


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the step precision-recall curve, one step per distinct score (higher = more
    likely positive)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[ends]
    fp = np.cumsum(1 - y)[ends]
    if tp[-1] == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def matthews(predicted: np.ndarray, labels: np.ndarray) -> float:
    tp = float(np.sum(predicted & (labels == 1)))
    tn = float(np.sum(~predicted & (labels == 0)))
    fp = float(np.sum(predicted & (labels == 0)))
    fn = float(np.sum(~predicted & (labels == 1)))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


class BinaryClassificationEvaluator(Evaluator):
    """Accuracy, F1, precision, recall (at their best thresholds), average precision and MCC.

    Metrics per similarity: `<fn>_accuracy`, `<fn>_accuracy_threshold`, `<fn>_f1`,
    `<fn>_f1_threshold`, `<fn>_precision`, `<fn>_recall`, `<fn>_ap`, `<fn>_mcc`. Euclidean and
    manhattan thresholds are distances (smaller = more similar). Primary: `<fn>_ap`.
    """

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        labels: Sequence[int],
        name: str = "binary",
        similarity_fn_names: Sequence[str] = ("cosine",),
        truncate_dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, truncate_dim, batch_size)
        check_same_length(name, sentences1=sentences1, sentences2=sentences2, labels=labels)
        if set(labels) - {0, 1}:
            raise ValueError(
                f"Evaluator {name!r}: labels must be 0 or 1, got {sorted(set(labels))}."
            )
        self.sentences1, self.sentences2 = list(sentences1), list(sentences2)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.similarity_fn_names = check_fns(list(similarity_fn_names))

    @property
    def primary_metric(self) -> str:
        return (
            "max_ap" if len(self.similarity_fn_names) > 1 else f"{self.similarity_fn_names[0]}_ap"
        )

    def inputs(self) -> dict[str, TextGroup]:
        return {"sentences1": TextGroup(self.sentences1), "sentences2": TextGroup(self.sentences2)}

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for fn in self.similarity_fn_names:
            similar = fn not in DISTANCES
            sims = paired_scores(embeddings["sentences1"], embeddings["sentences2"], fn)
            scores = (sims if similar else -sims).float().cpu().numpy()
            acc, acc_threshold = best_accuracy(scores, self.labels, similar)
            f1, precision, recall, f1_threshold = best_f1(scores, self.labels, similar)
            predicted = scores >= f1_threshold if similar else scores <= f1_threshold
            metrics.update(
                {
                    f"{fn}_accuracy": acc,
                    f"{fn}_accuracy_threshold": acc_threshold,
                    f"{fn}_f1": f1,
                    f"{fn}_f1_threshold": f1_threshold,
                    f"{fn}_precision": precision,
                    f"{fn}_recall": recall,
                    f"{fn}_ap": average_precision(scores if similar else -scores, self.labels),
                    f"{fn}_mcc": matthews(predicted, self.labels),
                }
            )
        if len(self.similarity_fn_names) > 1:
            for m in ("accuracy", "f1", "precision", "recall", "ap", "mcc"):
                metrics[f"max_{m}"] = max(metrics[f"{fn}_{m}"] for fn in self.similarity_fn_names)
        return metrics
