"""TripletEvaluator: is the anchor closer to the positive than to the negative?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup, check_same_length
from st_lightning.evaluation.similarity import check_fns, paired_scores


class TripletEvaluator(Evaluator):
    """Accuracy: the share of triplets with sim(a, p) > sim(a, n) + margin, per similarity.

    Metrics: `<fn>_accuracy` (and `max_accuracy` when several). Anchors are embedded with the
    "query" prompt and the others with "document", when the model has those prompts.
    """

    def __init__(
        self,
        anchors: Sequence[str],
        positives: Sequence[str],
        negatives: Sequence[str],
        name: str = "triplet",
        similarity_fn_names: Sequence[str] = ("cosine",),
        margin: float | Mapping[str, float] = 0.0,
        truncate_dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, truncate_dim, batch_size)
        check_same_length(name, anchors=anchors, positives=positives, negatives=negatives)
        self.anchors, self.positives, self.negatives = (
            list(anchors),
            list(positives),
            list(negatives),
        )
        self.similarity_fn_names = check_fns(list(similarity_fn_names))
        self.margin = (
            dict(margin)
            if isinstance(margin, Mapping)
            else dict.fromkeys(self.similarity_fn_names, float(margin))
        )

    @property
    def primary_metric(self) -> str:
        if len(self.similarity_fn_names) > 1:
            return "max_accuracy"
        return f"{self.similarity_fn_names[0]}_accuracy"

    def inputs(self) -> dict[str, TextGroup]:
        return {
            "anchors": TextGroup(self.anchors, "query"),
            "positives": TextGroup(self.positives, "document"),
            "negatives": TextGroup(self.negatives, "document"),
        }

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        a, p, n = embeddings["anchors"], embeddings["positives"], embeddings["negatives"]
        metrics = {}
        for fn in self.similarity_fn_names:
            pos, neg = paired_scores(a, p, fn), paired_scores(a, n, fn)
            metrics[f"{fn}_accuracy"] = float((pos > neg + self.margin.get(fn, 0.0)).float().mean())
        if len(self.similarity_fn_names) > 1:
            metrics["max_accuracy"] = max(metrics.values())
        return metrics
