"""GlobalOrthogonalRegularizationLoss: spread embeddings out over the space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss
from st_lightning.similarity import check_similarity, similarity_matrix
from st_lightning.utils.checks import check_choice


class GlobalOrthogonalRegularizationLoss(EmbeddingLoss):
    """Columns: any number of texts; no label. Returns the components `gor_mean` and
    `gor_second_moment` (Zhang et al., 2017).

    Per column: M1 = mean off-diagonal similarity, M2 = mean squared off-diagonal similarity;
    terms M1^2 and relu(M2 - 1/d), aggregated over columns by mean (or sum) and weighted.
    """

    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    citation = """@misc{zhang2017learningspreadoutlocalfeature,
    title={Learning Spread-out Local Feature Descriptors},
    author={Xu Zhang and Felix X. Yu and Sanjiv Kumar and Shih-Fu Chang},
    year={2017}, eprint={1708.06320}, archivePrefix={arXiv}
}"""

    def __init__(
        self,
        similarity: str = "cosine",
        mean_weight: float | None = 1.0,
        second_moment_weight: float | None = 1.0,
        aggregation: str = "mean",
    ) -> None:
        super().__init__()
        check_similarity(similarity)
        check_choice("aggregation", aggregation, ("mean", "sum"))
        if not mean_weight and not second_moment_weight:
            raise ValueError(
                "At least one of mean_weight and second_moment_weight must be non-zero."
            )
        self.similarity = similarity
        self.mean_weight = mean_weight
        self.second_moment_weight = second_moment_weight
        self.aggregation = aggregation

    def terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, d = x.shape
        sims = similarity_matrix(x, x, self.similarity)
        sims = sims * (1 - torch.eye(n, device=x.device, dtype=sims.dtype))
        pairs = max(n * (n - 1), 1)
        return (sims.sum() / pairs).pow(2), torch.relu(sims.pow(2).sum() / pairs - 1.0 / d)

    def forward(
        self, embeddings: Sequence[Tensor], labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        means, seconds = zip(*(self.terms(x) for x in embeddings), strict=True)
        agg = torch.sum if self.aggregation == "sum" else torch.mean
        out: dict[str, Tensor] = {}
        if self.mean_weight:
            out["gor_mean"] = self.mean_weight * agg(torch.stack(means))
        if self.second_moment_weight:
            out["gor_second_moment"] = self.second_moment_weight * agg(torch.stack(seconds))
        return out
