"""RerankingEvaluator: order each query's candidate documents (positives among negatives)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup
from st_lightning.evaluation.binary import average_precision
from st_lightning.evaluation.similarity import check_fns
from st_lightning.similarity import similarity_matrix


def tie_averaged_dcg(scores: np.ndarray, relevance: np.ndarray, k: int) -> float:
    """DCG@k where documents with equal scores share their positions' discounts evenly (so the
    result does not depend on how ties happen to be ordered)."""
    discounts = 1.0 / np.log2(np.arange(len(scores)) + 2)
    discounts[k:] = 0.0
    values, inverse = np.unique(-scores, return_inverse=True)
    gains = np.bincount(inverse, weights=relevance.astype(float)) / np.bincount(inverse)
    ends = np.cumsum(np.bincount(inverse))
    starts = np.r_[0, ends[:-1]]
    return float(sum(g * discounts[a:b].sum() for g, a, b in zip(gains, starts, ends, strict=True)))


class RerankingEvaluator(Evaluator):
    """MAP, MRR@k and NDCG@k of each query's candidates ranked by similarity.

    `samples`: dicts with "query", "positive" (str or list) and "negative" (str or list);
    samples without positives or negatives are dropped. Metrics: `map`, `mrr@k`, `ndcg@k`.
    """

    def __init__(
        self,
        samples: Sequence[Mapping[str, Any]],
        name: str = "reranking",
        at_k: int = 10,
        similarity_fn_name: str = "cosine",
        truncate_dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, truncate_dim, batch_size)
        check_fns([similarity_fn_name])
        listed = [
            {
                "query": s["query"],
                "positive": [s["positive"]]
                if isinstance(s["positive"], str)
                else list(s["positive"]),
                "negative": [s["negative"]]
                if isinstance(s["negative"], str)
                else list(s["negative"]),
            }
            for s in samples
        ]
        self.samples = [s for s in listed if s["positive"] and s["negative"]]
        if not self.samples:
            raise ValueError(f"Evaluator {name!r}: no sample has both positives and negatives.")
        self.at_k = at_k
        self.similarity_fn_name = similarity_fn_name

    @property
    def primary_metric(self) -> str:
        return f"ndcg@{self.at_k}"

    def inputs(self) -> dict[str, TextGroup]:
        docs = [d for s in self.samples for d in s["positive"] + s["negative"]]
        return {
            "queries": TextGroup([s["query"] for s in self.samples], "query"),
            "documents": TextGroup(docs, "document"),
        }

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        aps, mrrs, ndcgs = [], [], []
        start = 0
        for i, sample in enumerate(self.samples):
            n_pos, n = len(sample["positive"]), len(sample["positive"]) + len(sample["negative"])
            docs = embeddings["documents"][start : start + n]
            start += n
            query = embeddings["queries"][i : i + 1]
            scores = similarity_matrix(query, docs, self.similarity_fn_name)[0].cpu().numpy()
            relevant = np.array([1] * n_pos + [0] * (n - n_pos))
            ranked = relevant[np.argsort(-scores, kind="stable")]
            first = np.flatnonzero(ranked[: self.at_k])
            mrrs.append(1.0 / (first[0] + 1) if len(first) else 0.0)
            dcg = tie_averaged_dcg(scores, relevant, self.at_k)
            ideal = sum(1 / math.log2(j + 2) for j in range(min(self.at_k, n_pos)))
            ndcgs.append(dcg / ideal)
            aps.append(average_precision(scores, relevant))
        return {
            "map": float(np.mean(aps)),
            f"mrr@{self.at_k}": float(np.mean(mrrs)),
            f"ndcg@{self.at_k}": float(np.mean(ndcgs)),
        }
