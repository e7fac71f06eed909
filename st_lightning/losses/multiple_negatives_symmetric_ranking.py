"""MultipleNegativesSymmetricRankingLoss: in-batch negatives in both directions."""

from __future__ import annotations

from st_lightning.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss


class MultipleNegativesSymmetricRankingLoss(MultipleNegativesRankingLoss):
    """Columns: (anchor, positive[, negatives...]); no label.

    The mean of the anchor-to-candidates and positive-to-anchors InfoNCE losses: MNRL with
    `directions=("query_to_doc", "doc_to_query")` and `partition_mode="per_direction"`.
    """

    def __init__(
        self, scale: float = 20.0, similarity: str = "cosine", gather_across_devices: bool = False
    ) -> None:
        super().__init__(
            scale=scale,
            similarity=similarity,
            directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
            gather_across_devices=gather_across_devices,
        )
