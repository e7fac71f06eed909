"""EmbeddingSimilarityEvaluator: correlation of embedding similarity with gold scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef

from st_lightning.evaluation.base import Evaluator, TextGroup, check_same_length
from st_lightning.evaluation.similarity import check_fns, paired_scores


class EmbeddingSimilarityEvaluator(Evaluator):
    """Pearson and Spearman correlation between pair similarities and gold scores (e.g. STS-B).

    Metrics: `pearson_<fn>`, `spearman_<fn>` for each similarity function (and `*_max` when
    several). Primary: `spearman_<main_similarity>`.
    """

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        scores: Sequence[float],
        name: str = "sts",
        similarity_fn_names: Sequence[str] = ("cosine",),
        main_similarity: str | None = None,
        truncate_dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, truncate_dim, batch_size)
        check_same_length(name, sentences1=sentences1, sentences2=sentences2, scores=scores)
        self.sentences1, self.sentences2 = list(sentences1), list(sentences2)
        self.scores = torch.tensor([float(s) for s in scores], dtype=torch.float64)
        self.similarity_fn_names = check_fns(list(similarity_fn_names))
        self.main_similarity = main_similarity or self.similarity_fn_names[0]

    @property
    def primary_metric(self) -> str:
        return f"spearman_{self.main_similarity}"

    def inputs(self) -> dict[str, TextGroup]:
        return {"sentences1": TextGroup(self.sentences1), "sentences2": TextGroup(self.sentences2)}

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        metrics = {}
        for fn in self.similarity_fn_names:
            sims = paired_scores(embeddings["sentences1"], embeddings["sentences2"], fn).double()
            metrics[f"pearson_{fn}"] = float(pearson_corrcoef(sims, self.scores))
            metrics[f"spearman_{fn}"] = float(spearman_corrcoef(sims, self.scores))
        if len(self.similarity_fn_names) > 1:
            for m in ("pearson", "spearman"):
                metrics[f"{m}_max"] = max(metrics[f"{m}_{fn}"] for fn in self.similarity_fn_names)
        return metrics
